// The spool's LMDB tables, opened by name from one list, and the format version checked when
// a spool is opened. Knows the tables, not what their keys and values mean (record.hpp,
// indexes.hpp, store.hpp, staging.hpp say that).
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "spool/lmdb/lmdb.hpp"

namespace spoold::spool {

// A table of a newer format than the spool opened read-only (see check_format).
inline constexpr lmdb::Dbi kMissingTable{~0U};

// The layout is in ARCHITECTURE.md ("Spool layout"); a new table goes into kTables in
// tables.cpp as well as here.
struct Tables {
    lmdb::Dbi msg;      // id -> envelope record
    lmdb::Dbi body;     // body ref | chunk# -> body bytes
    lmdb::Dbi ready;    // delivery indexes: see indexes.cpp
    lmdb::Dbi deferred; //
    lmdb::Dbi expiry;   //
    lmdb::Dbi counters; // class | state -> messages | bytes
    lmdb::Dbi staging;  // id -> staging state of a body not yet enqueued
    lmdb::Dbi meta;     // text -> text or big-endian counters
    lmdb::Dbi corrupt;  // id -> an undecodable record, as found
    // Since format 2:
    lmdb::Dbi rcpt;         // recipient index: see indexes.cpp
    lmdb::Dbi ready_domain; // ready messages by class and recipient domain
    lmdb::Dbi dsn;          // the DSNs in the spool
    // Since format 3:
    lmdb::Dbi rcpt_gone; // id -> recipient-index keys of a removed message, for the sweep

    // Every table, and LMDB's own free list and main table: what holds pages.
    std::vector<lmdb::Dbi> with_pages() const;
};

// Opens every table; creates the missing ones when `create` (and the env is writable). A
// writable env also gets the tables an older format lacks (its upgrade fills them); a read-only
// one has kMissingTable for them.
Result<Tables> open_tables(lmdb::Env& env, bool create);

// The format this code writes. Format 1 lacks the recipient, ready-by-domain and DSN
// indexes, format 2 the rcpt_gone table (removals leave their recipient-index entries to a
// sweep); opening either writable upgrades it in place (upgrade.hpp).
inline constexpr std::uint32_t kFormatVersion = 3;
inline constexpr std::uint32_t kOldestFormat = 1;
// The format that added the recipient, ready-by-domain and DSN indexes: a spool of it (or
// newer) answers their reads, also read-only before its upgrade.
inline constexpr std::uint32_t kIndexedFormat = 2;
inline constexpr std::string_view kFormatKey = "format_version";

// The spool's format version. A new spool (writable) gets kFormatVersion. kCorrupt for a
// version written by a newer spoold (or not a number), kIo for a read-only open of an
// environment without one.
Result<std::uint32_t> check_format(lmdb::Env& env, const Tables& tables);

// Pages the B-trees hold in this transaction's view (the free list's own included): how
// full the spool is, which the file's size cannot say (LMDB never shrinks it).
Result<std::uint64_t> used_pages(const lmdb::Txn& txn, const Tables& tables);

} // namespace spoold::spool
