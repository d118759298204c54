// check() and repair: verifies records against indexes, counters and bodies in one read
// transaction with bounded memory, and rebuilds indexes and counters from the records in one
// write transaction. Never deletes a record or a body: an undecodable record is quarantined.
// What an index holds is indexes.hpp's to say; this file walks the records.
#pragma once

#include "common/result.hpp"
#include "spool/bodies.hpp"
#include "spool/indexes.hpp"
#include "spool/lmdb/lmdb.hpp"
#include "spool/spool.hpp"
#include "spool/store.hpp"

namespace spoold::spool {

class Checker {
public:
    Checker(const Store& store, const Indexes& indexes, const Bodies& bodies)
        : store_(store), indexes_(indexes), bodies_(bodies) {}

    // Fills `report` (see Spool::check); with `bodies`, also sums every body's chunks.
    Status check(const lmdb::Txn& txn, bool bodies, CheckReport& report) const;
    // Clears the indexes and counters and adds every decodable record back; undecodable
    // records go to `corrupt`. Memory is bounded: the records are read in steps.
    Status rebuild(lmdb::WriteTxn& txn) const;

private:
    const Store& store_;
    const Indexes& indexes_;
    const Bodies& bodies_;
};

} // namespace spoold::spool
