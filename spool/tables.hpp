// The spool's LMDB tables, opened by name from one list, and the format version checked when
// a spool is opened. Knows the tables, not what their keys and values mean (record.hpp,
// indexes.hpp, store.hpp, staging.hpp say that).
#pragma once

#include <cstdint>
#include <vector>

#include "common/result.hpp"
#include "spool/lmdb/lmdb.hpp"

namespace spoold::spool {

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

    // Every table, and LMDB's own free list and main table: what holds pages.
    std::vector<lmdb::Dbi> with_pages() const;
};

// Opens every table; creates the missing ones when `create` (and the env is writable).
Result<Tables> open_tables(lmdb::Env& env, bool create);

// A new spool gets the current format version; an existing one must have it. kCorrupt for a
// version written by a newer spoold, kIo for a read-only open of an environment without one.
Status check_format(lmdb::Env& env, const Tables& tables);

// Pages the B-trees hold in this transaction's view (the free list's own included): how
// full the spool is, which the file's size cannot say (LMDB never shrinks it).
Result<std::uint64_t> used_pages(const lmdb::Txn& txn, const Tables& tables);

} // namespace spoold::spool
