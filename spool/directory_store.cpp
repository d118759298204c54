#include "spool/directory_store.hpp"

#include <array>

#include "common/address.hpp"
#include "spool/lmdb/lmdb.hpp"

namespace spoold::spool {
namespace {

using address::ascii_lower;

// meta: which of the two tables is live ("0" or "1"), and what it was built from.
constexpr std::string_view kLiveKey = "live";
constexpr std::string_view kSourceKey = "source";
// The single table of the first layout; emptied once, its entries are rebuilt at start anyway.
constexpr const char* kOldTable = "entries";

std::string alias_key(std::string_view target, std::string_view key) {
    std::string out = ascii_lower(target);
    out.push_back('\0');
    out.append(key);
    return out;
}

} // namespace

struct DirectoryStore::Tables {
    lmdb::Dbi meta;
    std::array<lmdb::Dbi, 2> entries; // key -> target
    std::array<lmdb::Dbi, 2> aliases; // target | 0 | key -> empty, for non-empty targets

    // The live table's index, none before the first rebuild.
    Result<std::optional<int>> live(const lmdb::Txn& txn) const {
        SPOOLD_TRY(v, txn.get(meta, kLiveKey));
        if (!v || v->size() != 1 || ((*v)[0] != '0' && (*v)[0] != '1')) {
            return std::optional<int>{};
        }
        return std::optional<int>{(*v)[0] - '0'};
    }
};

DirectoryStore::DirectoryStore(std::unique_ptr<lmdb::Env> env, std::unique_ptr<Tables> tables)
    : env_(std::move(env)), t_(std::move(tables)) {}

DirectoryStore::~DirectoryStore() = default;

Result<std::unique_ptr<DirectoryStore>> DirectoryStore::open(const DirectoryStoreOptions& options) {
    lmdb::EnvOptions eo;
    eo.path = options.path;
    eo.map_size = options.max_size_bytes;
    eo.read_only = options.read_only;
    eo.max_tables = 8;
    SPOOLD_TRY(env, lmdb::Env::open(eo));
    const bool create = !options.read_only;
    auto t = std::make_unique<Tables>();
    SPOOLD_TRY(meta, env->table("meta", create));
    t->meta = meta;
    for (std::size_t g = 0; g < 2; ++g) {
        SPOOLD_TRY(entries, env->table("entries" + std::to_string(g), create));
        SPOOLD_TRY(aliases, env->table("aliases" + std::to_string(g), create));
        t->entries[g] = entries;
        t->aliases[g] = aliases;
    }
    if (create) {
        if (auto old = env->table(kOldTable, false); old) {
            SPOOLD_TRY(txn, env->begin_write());
            SPOOLD_CHECK(txn.clear(*old));
            SPOOLD_CHECK(txn.commit());
        }
    }
    return std::unique_ptr<DirectoryStore>(new DirectoryStore(std::move(env), std::move(t)));
}

Status DirectoryStore::rebuild(const NextEntry& next, std::string_view source) {
    int target = 0;
    {
        SPOOLD_TRY(txn, env_->begin_read());
        SPOOLD_TRY(live, t_->live(txn));
        target = live ? 1 - *live : 0;
    }
    const auto g = static_cast<std::size_t>(target);
    {
        SPOOLD_TRY(txn, env_->begin_write());
        SPOOLD_CHECK(txn.clear(t_->entries[g]));
        SPOOLD_CHECK(txn.clear(t_->aliases[g]));
        SPOOLD_CHECK(txn.commit());
    }
    std::string key;
    std::string value;
    for (bool more = true; more;) {
        SPOOLD_TRY(txn, env_->begin_write());
        for (std::size_t n = 0; n < kDirectoryBuildBatch; ++n) {
            SPOOLD_TRY(got, next(key, value));
            if (!got) {
                more = false;
                break;
            }
            const std::string lowered = ascii_lower(key);
            SPOOLD_TRY(inserted, txn.put(t_->entries[g], lowered, value,
                                         lmdb::WriteTxn::PutMode::kNoOverwrite));
            if (inserted && !value.empty()) {
                SPOOLD_CHECK(txn.put(t_->aliases[g], alias_key(value, lowered), {}));
            }
        }
        SPOOLD_CHECK(txn.commit());
    }
    SPOOLD_TRY(txn, env_->begin_write());
    SPOOLD_CHECK(txn.put(t_->meta, kLiveKey, std::to_string(target)));
    SPOOLD_CHECK(txn.put(t_->meta, kSourceKey, source));
    return txn.commit();
}

Status DirectoryStore::replace(std::vector<std::pair<std::string, std::string>> entries) {
    std::size_t i = 0;
    return rebuild([&](std::string& key, std::string& target) -> Result<bool> {
        if (i == entries.size()) {
            return false;
        }
        key = std::move(entries[i].first);
        target = std::move(entries[i].second);
        ++i;
        return true;
    });
}

Result<std::optional<std::string>> DirectoryStore::lookup(std::string_view key) {
    SPOOLD_TRY(txn, env_->begin_read());
    SPOOLD_TRY(live, t_->live(txn));
    if (!live) {
        return std::optional<std::string>{};
    }
    SPOOLD_TRY(v, txn.get(t_->entries[static_cast<std::size_t>(*live)], ascii_lower(key)));
    if (!v) {
        return std::optional<std::string>{};
    }
    return std::optional<std::string>{std::string(*v)};
}

Result<std::vector<std::string>> DirectoryStore::aliases_of(std::string_view target,
                                                            std::size_t max) {
    std::vector<std::string> out;
    SPOOLD_TRY(txn, env_->begin_read());
    SPOOLD_TRY(live, t_->live(txn));
    if (!live) {
        return out;
    }
    const std::string prefix = alias_key(target, {});
    SPOOLD_CHECK(txn.scan(t_->aliases[static_cast<std::size_t>(*live)], prefix,
                          [&](std::string_view k, std::string_view) {
                              if (!k.starts_with(prefix) || out.size() >= max) {
                                  return false;
                              }
                              out.emplace_back(k.substr(prefix.size()));
                              return true;
                          }));
    return out;
}

Result<std::string> DirectoryStore::source() {
    SPOOLD_TRY(txn, env_->begin_read());
    SPOOLD_TRY(live, t_->live(txn));
    if (!live) {
        return std::string();
    }
    SPOOLD_TRY(v, txn.get(t_->meta, kSourceKey));
    return v ? std::string(*v) : std::string();
}

Result<std::uint64_t> DirectoryStore::size() {
    SPOOLD_TRY(txn, env_->begin_read());
    SPOOLD_TRY(live, t_->live(txn));
    if (!live) {
        return 0;
    }
    SPOOLD_TRY(st, txn.stat(t_->entries[static_cast<std::size_t>(*live)]));
    return st.entries;
}

} // namespace spoold::spool
