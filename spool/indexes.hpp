// The delivery indexes (ready, deferred, expiry) and the counters: which entries a message's
// facts call for, kept in step with its record in the caller's write transaction, the queries
// over them, and their part of check(). The one place to add an index: a new entry in
// kIndexes (indexes.cpp) and a table in tables.hpp. Does not touch records or bodies.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "spool/lmdb/lmdb.hpp"
#include "spool/record.hpp"
#include "spool/spool.hpp"
#include "spool/tables.hpp"

namespace spoold::spool {

// An entry of a time index (deferred, expiry).
struct TimedId {
    UnixMillis at = 0;
    QueueId id;
};

class Indexes {
public:
    explicit Indexes(const Tables& tables) : t_(tables) {}

    // Puts (removes) the entries the facts call for and counts the message in (out of) the
    // counters of its class and state. remove() must get the facts add() got.
    Status add(lmdb::WriteTxn& txn, const record::IndexFacts& f) const;
    Status remove(lmdb::WriteTxn& txn, const record::IndexFacts& f) const;
    // Empties every index and the counters (repair then add()s each record again).
    Status clear(lmdb::WriteTxn& txn) const;
    // Drops a deferred entry whose message is gone (so nothing trips on it forever).
    Status drop_deferred(lmdb::WriteTxn& txn, TimedId entry) const;

    Result<Counters> counters(const lmdb::Txn& txn) const;
    // Ready ids of one class in id (arrival) order, strictly after `after`.
    Result<std::vector<QueueId>> ready_after(const lmdb::Txn& txn, ClassId klass, QueueId after,
                                             std::size_t max) const;
    // Entries of the deferred (expiry) index at or before `now`, oldest first.
    Result<std::vector<TimedId>> due(const lmdb::Txn& txn, UnixMillis now, std::size_t max) const;
    Result<std::vector<TimedId>> expired(const lmdb::Txn& txn, UnixMillis now,
                                         std::size_t max) const;

    // ---- check(): problems go to `problem`, one line each ----
    using Problem = std::function<void(std::string)>;
    // The facts of the record with this id; empty when absent or undecodable.
    using FactsOf = std::function<Result<std::optional<record::IndexFacts>>(QueueId)>;
    // The record is in exactly the indexes its facts call for.
    Status check_record(const lmdb::Txn& txn, const record::IndexFacts& f,
                        const Problem& problem) const;
    // Every entry points at a record whose facts give that entry; counts the entries seen.
    Status check_entries(const lmdb::Txn& txn, const FactsOf& facts_of, const Problem& problem,
                         std::uint64_t& entries) const;
    // The stored counters equal `scanned` (what the records add up to).
    Status check_counters(const lmdb::Txn& txn, const Counters& scanned,
                          const Problem& problem) const;

private:
    Status counter_add(lmdb::WriteTxn& txn, ClassId klass, MsgState state, std::int64_t dmsg,
                       std::int64_t dbytes) const;
    Status read_counters(const lmdb::Txn& txn, Counters& out, const Problem* malformed) const;
    Result<std::vector<TimedId>> time_scan(const lmdb::Txn& txn, lmdb::Dbi dbi, UnixMillis now,
                                           std::size_t max) const;

    Tables t_;
};

} // namespace spoold::spool
