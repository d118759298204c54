#include "spool/directory_store.hpp"

#include <algorithm>
#include <cctype>

#include "spool/lmdb/lmdb.hpp"

namespace spoold::spool {
namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

} // namespace

DirectoryStore::DirectoryStore(std::unique_ptr<lmdb::Env> env, unsigned int dbi)
    : env_(std::move(env)), dbi_(dbi) {}

DirectoryStore::~DirectoryStore() = default;

Result<std::unique_ptr<DirectoryStore>> DirectoryStore::open(const DirectoryStoreOptions& options) {
    lmdb::EnvOptions eo;
    eo.path = options.path;
    eo.map_size = options.max_size_bytes;
    eo.read_only = options.read_only;
    eo.max_tables = 2;
    auto env = lmdb::Env::open(eo);
    if (!env) {
        return tl::unexpected(env.error());
    }
    auto dbi = (*env)->table("entries", !options.read_only);
    if (!dbi) {
        return tl::unexpected(dbi.error());
    }
    return std::unique_ptr<DirectoryStore>(new DirectoryStore(std::move(*env), dbi->handle));
}

Status DirectoryStore::replace(std::vector<std::pair<std::string, std::string>> entries) {
    auto txn = env_->begin_write();
    if (!txn) {
        return tl::unexpected(txn.error());
    }
    const lmdb::Dbi dbi{dbi_};
    if (auto st = txn->clear(dbi); !st) {
        return st;
    }
    for (const auto& [key, value] : entries) {
        if (auto r = txn->put(dbi, lower(key), value); !r) {
            return tl::unexpected(r.error());
        }
    }
    return txn->commit();
}

Result<std::optional<std::string>> DirectoryStore::lookup(std::string_view key) {
    auto txn = env_->begin_read();
    if (!txn) {
        return tl::unexpected(txn.error());
    }
    auto v = txn->get(lmdb::Dbi{dbi_}, lower(key));
    if (!v) {
        return tl::unexpected(v.error());
    }
    if (!*v) {
        return std::optional<std::string>{};
    }
    return std::optional<std::string>{std::string(**v)};
}

Result<std::uint64_t> DirectoryStore::size() {
    auto txn = env_->begin_read();
    if (!txn) {
        return tl::unexpected(txn.error());
    }
    auto st = txn->stat(lmdb::Dbi{dbi_});
    if (!st) {
        return tl::unexpected(st.error());
    }
    return st->entries;
}

} // namespace spoold::spool
