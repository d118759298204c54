#include "spool/tables.hpp"

#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace spoold::spool {
namespace {

constexpr std::uint32_t kFormatVersion = 1;
constexpr std::string_view kFormatKey = "format_version";

constexpr std::pair<lmdb::Dbi Tables::*, const char*> kTables[] = {
    {&Tables::msg, "msg"},           {&Tables::body, "body"},     {&Tables::ready, "ready"},
    {&Tables::deferred, "deferred"}, {&Tables::expiry, "expiry"}, {&Tables::counters, "counters"},
    {&Tables::staging, "staging"},   {&Tables::meta, "meta"},     {&Tables::corrupt, "corrupt"},
};

} // namespace

std::vector<lmdb::Dbi> Tables::with_pages() const {
    constexpr unsigned int kFreeDbi = 0;
    constexpr unsigned int kMainDbi = 1;
    std::vector<lmdb::Dbi> out;
    for (const auto& [member, name] : kTables) {
        out.push_back(this->*member);
    }
    out.push_back(lmdb::Dbi{kFreeDbi});
    out.push_back(lmdb::Dbi{kMainDbi});
    return out;
}

Result<Tables> open_tables(lmdb::Env& env, bool create) {
    Tables t;
    for (const auto& [member, name] : kTables) {
        SPOOLD_TRY(dbi, env.table(name, create));
        t.*member = dbi;
    }
    return t;
}

Status check_format(lmdb::Env& env, const Tables& tables) {
    const std::string current = std::to_string(kFormatVersion);
    {
        SPOOLD_TRY(txn, env.begin_read());
        SPOOLD_TRY(found, txn.get(tables.meta, kFormatKey));
        if (found) {
            if (*found != current) {
                // Only "1" exists today; anything else was written by a newer spoold.
                return fail(ErrorKind::kCorrupt,
                            fmt::format("{}: spool format {} is not {} (newer spoold?)", env.path(),
                                        *found, current));
            }
            return {};
        }
    }
    if (env.read_only()) {
        return fail(ErrorKind::kIo, fmt::format("{}: not a spool (no format version)", env.path()));
    }
    SPOOLD_TRY(txn, env.begin_write());
    SPOOLD_CHECK(txn.put(tables.meta, kFormatKey, current));
    return txn.commit();
}

Result<std::uint64_t> used_pages(const lmdb::Txn& txn, const Tables& tables) {
    constexpr std::uint64_t kMetaPages = 2;
    std::uint64_t used = kMetaPages;
    for (const lmdb::Dbi dbi : tables.with_pages()) {
        SPOOLD_TRY(st, txn.stat(dbi));
        used += st.branch_pages + st.leaf_pages + st.overflow_pages;
    }
    return used;
}

} // namespace spoold::spool
