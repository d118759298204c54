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
    SPOOLD_TRY(env, lmdb::Env::open(eo));
    SPOOLD_TRY(dbi, env->table("entries", !options.read_only));
    return std::unique_ptr<DirectoryStore>(new DirectoryStore(std::move(env), dbi.handle));
}

Status DirectoryStore::replace(std::vector<std::pair<std::string, std::string>> entries) {
    SPOOLD_TRY(txn, env_->begin_write());
    const lmdb::Dbi dbi{dbi_};
    SPOOLD_CHECK(txn.clear(dbi));
    for (const auto& [key, value] : entries) {
        SPOOLD_CHECK(txn.put(dbi, lower(key), value));
    }
    return txn.commit();
}

Result<std::optional<std::string>> DirectoryStore::lookup(std::string_view key) {
    SPOOLD_TRY(txn, env_->begin_read());
    SPOOLD_TRY(v, txn.get(lmdb::Dbi{dbi_}, lower(key)));
    if (!v) {
        return std::optional<std::string>{};
    }
    return std::optional<std::string>{std::string(*v)};
}

Result<std::uint64_t> DirectoryStore::size() {
    SPOOLD_TRY(txn, env_->begin_read());
    SPOOLD_TRY(st, txn.stat(lmdb::Dbi{dbi_}));
    return st.entries;
}

} // namespace spoold::spool
