// check() and repair: verifies records against indexes, counters and bodies with bounded memory
// in short read transactions that resume by key (a long reader would keep LMDB from reusing
// freed pages, and the file would grow), reading in key order (digests, no lookups) unless
// something must be named, and rebuilds indexes and counters from the records in one write
// transaction. Never deletes a record or a body: an undecodable record is quarantined.
// What an index holds is indexes.hpp's to say; this file walks the records.
#pragma once

#include <cstddef>
#include <functional>

#include "common/result.hpp"
#include "spool/bodies.hpp"
#include "spool/indexes.hpp"
#include "spool/lmdb/lmdb.hpp"
#include "spool/spool.hpp"
#include "spool/store.hpp"

namespace spoold::spool {

// Records (or index entries) checked in one read transaction.
inline constexpr std::size_t kCheckStep = 4096;

class Checker {
public:
    Checker(const Store& store, const Indexes& indexes, const Bodies& bodies)
        : store_(store), indexes_(indexes), bodies_(bodies) {}

    // Fills `report` (see Spool::check); with `bodies`, also sums every body's chunks. Each
    // step of `step` records or entries is one read transaction of `env`; `after_step` runs
    // between them (tests change the spool there).
    Status check(const lmdb::Env& env, bool bodies, CheckReport& report,
                 std::size_t step = kCheckStep, const std::function<void()>& after_step = {}) const;
    // Clears the indexes and counters and adds every decodable record back; undecodable
    // records go to `corrupt`. Memory is bounded: the records are read in steps.
    Status rebuild(lmdb::WriteTxn& txn) const;

private:
    class Steps;
    // One step of the record pass from `from`; returns where the next starts (none: done).
    // With `digest`, the records' index entries are added to it; without, looked up.
    Result<std::optional<QueueId>> scan_records(const lmdb::Txn& txn, QueueId from,
                                                std::size_t step, bool bodies, CheckReport& report,
                                                IndexDigest* digest) const;
    // Records and index tables in key order, compared by IndexDigest: true when that vouches
    // for the indexes (one snapshot, no problem, equal digests).
    Result<bool> check_by_digest(Steps& steps, bool bodies, std::size_t step,
                                 CheckReport& report) const;
    // Each record's entries and each entry's record looked up: names every problem, and
    // holds while the spool changes between steps.
    Status check_by_lookup(Steps& steps, bool bodies, std::size_t step, CheckReport& report) const;

    const Store& store_;
    const Indexes& indexes_;
    const Bodies& bodies_;
};

} // namespace spoold::spool
