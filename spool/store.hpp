// Messages in the spool's tables: a message's record, its body and (through Indexes) its
// index entries and counters, kept in step inside the writer's transaction; and the message
// operations the writer applies (outcomes, promotion, changes, removal). A record that cannot
// be decoded is quarantined, not trusted. Staging (bodies before their envelope) is
// staging.hpp's; the batching is writer.hpp's.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "spool/bodies.hpp"
#include "spool/indexes.hpp"
#include "spool/lmdb/lmdb.hpp"
#include "spool/record.hpp"
#include "spool/spool.hpp"
#include "spool/tables.hpp"

namespace spoold::spool {

// A stored message as the writer sees it: the envelope and where its body lives.
struct Stored {
    Envelope env;
    std::uint64_t body_ref = 0;
    MessageFacts facts() const { return message_facts(env, body_ref); }
};

// Where a new message's body goes: after the chunks already staged under `ref`, or (all zero
// but `ref`) into a fresh body.
struct BodyStart {
    std::uint64_t ref = 0;
    std::uint32_t next_chunk = 0;
    std::uint64_t bytes = 0; // staged so far
};

class Store {
public:
    Store(const Tables& tables, const Indexes& indexes, const Bodies& bodies)
        : t_(tables), indexes_(indexes), bodies_(bodies) {}

    // ---- reads, in any transaction ----

    // The record as stored (not decoded); empty when absent. Valid until the txn ends.
    Result<std::optional<std::string_view>> record(const lmdb::Txn& txn, QueueId id) const;
    // Records in id order from `from` on, until fn returns false. `id` is the key's id (0
    // for a malformed key); views are valid only during the call.
    using RecordFn = std::function<bool(QueueId id, std::string_view raw)>;
    Status scan_records(const lmdb::Txn& txn, QueueId from, const RecordFn& fn) const;
    Result<std::optional<QueueId>> oldest(const lmdb::Txn& txn) const;
    Result<std::optional<QueueId>> newest(const lmdb::Txn& txn) const;
    Result<std::vector<QueueId>> quarantined(const lmdb::Txn& txn, std::size_t max) const;

    // ---- writes, in the writer's transaction ----

    // A new message must have an id, a class in range and recipients.
    static Status validate_new(const Envelope& env);
    // Stores a complete new message: record, body, indexes and counters. The envelope's size
    // becomes the bytes actually stored, so the byte counters always equal a scan. kInternal
    // (nothing written) when the id is already in the spool.
    Status insert(lmdb::WriteTxn& txn, const NewMessage& msg) const;
    Status insert(lmdb::WriteTxn& txn, const NewMessage& msg, BodyStart body) const;
    // Empty when absent; a corrupt record is quarantined and reported as kCorrupt.
    Result<std::optional<Stored>> load(lmdb::WriteTxn& txn, QueueId id) const;
    // Moves a record to `corrupt` as it is; the caller has dealt with its index entries.
    Status move_to_corrupt(lmdb::WriteTxn& txn, QueueId id, const std::string& raw) const;

    // ---- the message operations ----

    // Loads the message, applies `change` and stores it when it changed; kNotFound if absent.
    Status modify(lmdb::WriteTxn& txn, QueueId id,
                  const std::function<Status(Envelope&)>& change) const;
    Status remove(lmdb::WriteTxn& txn, QueueId id) const;
    // Applies delivery results; a message whose recipients are all final leaves the spool.
    // `dsn`, when given, is inserted in the same transaction.
    Status record_outcome(lmdb::WriteTxn& txn, QueueId id,
                          const std::vector<RecipientUpdate>& updates,
                          const std::optional<NewMessage>& dsn) const;
    // Flags the message kFlagDelayWarned and inserts its delay warning `dsn`, unless it was
    // flagged already (then nothing is written: never two warnings); kNotFound if absent.
    Status record_delay_warning(lmdb::WriteTxn& txn, QueueId id, const NewMessage& dsn) const;
    // Moves messages whose deferral is due (<= now) to ready, at most `max` (capped at
    // kMaxPromotePerOp).
    Status promote_due(lmdb::WriteTxn& txn, UnixMillis now, std::size_t max) const;
    // Applies one expiry (Spool::expire); a skipped item is kNotFound, kInvalid (not due at
    // `now`) or kCorrupt (quarantined), with nothing written but the quarantine.
    Status expire(lmdb::WriteTxn& txn, const Expiry& e, UnixMillis now) const;

private:
    // Moves an undecodable record to `corrupt` and out of the indexes (exactly, when its
    // fixed header is intact). Returns the kCorrupt error for the caller on success.
    Status quarantine(lmdb::WriteTxn& txn, QueueId id, std::string_view raw,
                      const Error& why) const;
    // record_outcome on a loaded message.
    Status apply_outcome(lmdb::WriteTxn& txn, const Stored& stored,
                         const std::vector<RecipientUpdate>& updates,
                         const std::optional<NewMessage>& dsn) const;
    // Rewrites a message whose indexes were derived from `old_facts` (same body).
    Status rewrite(lmdb::WriteTxn& txn, const MessageFacts& old_facts, const Envelope& env) const;
    // Record, body and index entries, gone.
    Status erase(lmdb::WriteTxn& txn, const MessageFacts& f) const;

    Tables t_;
    const Indexes& indexes_;
    const Bodies& bodies_;
};

} // namespace spoold::spool
