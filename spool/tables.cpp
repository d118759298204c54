#include "spool/tables.hpp"

#include <charconv>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace spoold::spool {
namespace {

struct TableSpec {
    lmdb::Dbi Tables::*member;
    const char* name;
    std::uint32_t since; // the format version that added it
};

constexpr TableSpec kTables[] = {
    {&Tables::msg, "msg", 1},
    {&Tables::body, "body", 1},
    {&Tables::ready, "ready", 1},
    {&Tables::deferred, "deferred", 1},
    {&Tables::expiry, "expiry", 1},
    {&Tables::counters, "counters", 1},
    {&Tables::staging, "staging", 1},
    {&Tables::meta, "meta", 1},
    {&Tables::corrupt, "corrupt", 1},
    {&Tables::rcpt, "rcpt", 2},
    {&Tables::ready_domain, "ready_domain", 2},
    {&Tables::dsn, "dsn", 2},
    {&Tables::rcpt_gone, "rcpt_gone", 3},
};

} // namespace

std::vector<lmdb::Dbi> Tables::with_pages() const {
    constexpr unsigned int kFreeDbi = 0;
    constexpr unsigned int kMainDbi = 1;
    std::vector<lmdb::Dbi> out;
    for (const TableSpec& spec : kTables) {
        if (this->*spec.member != kMissingTable) {
            out.push_back(this->*spec.member);
        }
    }
    out.push_back(lmdb::Dbi{kFreeDbi});
    out.push_back(lmdb::Dbi{kMainDbi});
    return out;
}

Result<Tables> open_tables(lmdb::Env& env, bool create) {
    Tables t;
    for (const TableSpec& spec : kTables) {
        // An existing spool of an older format gets the newer tables when opened writable (the
        // older ones come first: a directory that is not a spool fails on them).
        const bool newer = spec.since > kOldestFormat;
        auto dbi = env.table(spec.name, !env.read_only() && (create || newer));
        if (!dbi && newer && env.read_only()) {
            // An older format opened read-only: the table comes with the upgrade.
            t.*spec.member = kMissingTable;
            continue;
        }
        SPOOLD_CHECK(dbi);
        t.*spec.member = *dbi;
    }
    return t;
}

Result<std::uint32_t> check_format(lmdb::Env& env, const Tables& tables) {
    {
        SPOOLD_TRY(txn, env.begin_read());
        SPOOLD_TRY(found, txn.get(tables.meta, kFormatKey));
        if (found) {
            std::uint32_t version = 0;
            const auto [end, ec] =
                std::from_chars(found->data(), found->data() + found->size(), version);
            if (ec != std::errc{} || end != found->data() + found->size() ||
                version < kOldestFormat || version > kFormatVersion) {
                return fail(ErrorKind::kCorrupt,
                            fmt::format("{}: spool format {} is not one of {}..{} (newer spoold?)",
                                        env.path(), *found, kOldestFormat, kFormatVersion));
            }
            return version;
        }
    }
    if (env.read_only()) {
        return fail(ErrorKind::kIo, fmt::format("{}: not a spool (no format version)", env.path()));
    }
    SPOOLD_TRY(txn, env.begin_write());
    SPOOLD_CHECK(txn.put(tables.meta, kFormatKey, std::to_string(kFormatVersion)));
    SPOOLD_CHECK(txn.commit());
    return kFormatVersion;
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
