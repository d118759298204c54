// The indexes (ready, deferred, expiry; recipient, ready-by-domain, DSN) and the counters:
// which entries a message's facts call for, kept in step with its record in the caller's write
// transaction, the queries over them, and their part of check(). The one place to add an index:
// a new entry in kIndexes (indexes.cpp) and a table in tables.hpp. Does not touch records.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
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

// What a message's index entries derive from: its header, and its recipients when the whole
// record decoded. Without them the recipient indexes are left alone (a quarantined record
// whose recipients are unreadable keeps its entries there until check --repair).
struct MessageFacts {
    MessageFacts(const record::IndexFacts& h) : header(h) {} // NOLINT: header-only facts
    MessageFacts(const record::IndexFacts& h, record::RecipientFacts r)
        : header(h), recipients(std::move(r)) {}
    record::IndexFacts header;
    std::optional<record::RecipientFacts> recipients;
};
MessageFacts message_facts(const Envelope& env, std::uint64_t body_ref);

// How many indexes kIndexes (indexes.cpp) lists.
inline constexpr std::size_t kNumIndexes = 6;

// check()'s sequential form: each index's entries summed up (how many, and the sum of their
// keys' 64-bit hashes), once from the records' facts and once from the index tables. Equal
// digests of one snapshot mean the same entries (keys are distinct; a difference that sums
// to zero has a chance of 2^-64), with no lookup per record or entry.
struct IndexDigest {
    std::array<std::uint64_t, kNumIndexes> count{};
    std::array<std::uint64_t, kNumIndexes> sum{};
    friend bool operator==(const IndexDigest&, const IndexDigest&) = default;
};

// Where check_entries goes on: an index (of kIndexes) and the key to start at (inclusive;
// empty = its first).
struct EntryCursor {
    std::size_t index = 0;
    std::string key;
};

class Indexes {
public:
    explicit Indexes(const Tables& tables) : t_(tables) {}

    // Puts (removes) the entries the facts call for and counts the message in (out of) the
    // counters of its class and state. remove() must get the facts add() got.
    Status add(lmdb::WriteTxn& txn, const MessageFacts& f) const;
    Status remove(lmdb::WriteTxn& txn, const MessageFacts& f) const;
    // From `before` to `after` (same id): only the entries and counters that differ change.
    Status update(lmdb::WriteTxn& txn, const MessageFacts& before, const MessageFacts& after) const;
    // Whether a spool of format `format` lacks an index (its upgrade walks the records).
    static bool lacks_index(std::uint32_t format);
    // Puts only the entries of the indexes a spool of format `format` lacks (the upgrade).
    Status add_entries_after(lmdb::WriteTxn& txn, const MessageFacts& f,
                             std::uint32_t format) const;
    // Empties every index and the counters (repair then add()s each record again).
    Status clear(lmdb::WriteTxn& txn) const;
    // Whether `after` has an entry of the ready or ready-by-domain index that `before` lacks:
    // the message became ready where a reader following those indexes may have passed (the
    // ready epoch moves). A rewrite of the expiry alone, or a hold, adds none.
    static bool adds_ready_entry(const MessageFacts& before, const MessageFacts& after);
    // Drops a deferred entry whose message is gone (so nothing trips on it forever).
    Status drop_deferred(lmdb::WriteTxn& txn, TimedId entry) const;

    Result<Counters> counters(const lmdb::Txn& txn) const;
    // Ready ids of one class in id (arrival) order, strictly after `after`.
    Result<std::vector<QueueId>> ready_after(const lmdb::Txn& txn, ClassId klass, QueueId after,
                                             std::size_t max) const;
    // The domains that have ready mail of this class (sorted), strictly after `after`; one
    // seek per domain, whatever the mail behind it.
    Result<std::vector<std::string>> ready_domains(const lmdb::Txn& txn, ClassId klass,
                                                   std::string_view after, std::size_t max) const;
    // Ready ids of one class with a queued recipient in `domain`, in id order after `after`.
    Result<std::vector<QueueId>> ready_in_domain(const lmdb::Txn& txn, ClassId klass,
                                                 std::string_view domain, QueueId after,
                                                 std::size_t max) const;
    // Entries of the deferred (expiry) index at or before `now`, oldest first.
    Result<std::vector<TimedId>> due(const lmdb::Txn& txn, UnixMillis now, std::size_t max) const;
    Result<std::vector<TimedId>> expired(const lmdb::Txn& txn, UnixMillis now,
                                         std::size_t max) const;
    // Ids of the DSNs in the spool (any state), in id order after `after`.
    Result<std::vector<QueueId>> dsns_after(const lmdb::Txn& txn, QueueId after,
                                            std::size_t max) const;
    // Ids of messages with a recipient at `address` (lower-cased) after `after`, in id order.
    Result<std::vector<QueueId>> recipient_after(const lmdb::Txn& txn, std::string_view address,
                                                 QueueId after, std::size_t max) const;
    // Ids of messages with a recipient whose key starts with `prefix` (record::rcpt_prefix or
    // rcpt_tag_prefix), in key order, from after `resume` (empty: from the start). Entries a
    // removed message left for the sweep are skipped.
    Result<IdPage> recipient_page(const lmdb::Txn& txn, std::string_view prefix,
                                  std::string_view resume, std::size_t max) const;

    // ---- the sweep: a removed message's recipient-index entries wait in rcpt_gone ----
    // How many removed messages' entries wait (0 for a spool without the table).
    Result<std::uint64_t> removed_pending(const lmdb::Txn& txn) const;
    // Deletes the entries of up to `max` removed messages (about `max_keys` keys at most, one
    // message's at least) from the recipient index in key order, and their rcpt_gone entries,
    // oldest id first: how many messages' entries went.
    Result<std::size_t> sweep(lmdb::WriteTxn& txn, std::size_t max, std::size_t max_keys) const;

    // ---- check(): problems go to `problem`, one line each ----
    using Problem = std::function<void(std::string)>;
    // The facts of the record with this id; empty when absent or undecodable.
    using FactsOf = std::function<Result<std::optional<record::IndexFacts>>(QueueId)>;
    // The recipient facts of the record with this id; empty when absent or undecodable.
    using RecipientsOf = std::function<Result<std::optional<record::RecipientFacts>>(QueueId)>;
    // The record is in exactly the indexes its facts call for.
    Status check_record(const lmdb::Txn& txn, const MessageFacts& f, const Problem& problem) const;
    // Every entry points at a record whose facts give that entry; counts the entries seen.
    // Entries of the recipient indexes are checked only with `recipients_of`. One index's
    // entries from `from` on, at most `max` of them, per call: returns where to go on (empty
    // when every index is done), so a long check uses short read transactions.
    Result<std::optional<EntryCursor>> check_entries(const lmdb::Txn& txn, const FactsOf& facts_of,
                                                     const Problem& problem, std::uint64_t& entries,
                                                     const RecipientsOf& recipients_of = {},
                                                     const EntryCursor& from = {},
                                                     std::size_t max = SIZE_MAX) const;
    // Adds the entries the facts call for to `d` (the records' side of the digest).
    static void digest_record(const MessageFacts& f, IndexDigest& d);
    // Adds the stored entries to `d`, at most `max` per call, from `from` on, in key order:
    // where to go on (empty when every index is done), as check_entries.
    Result<std::optional<EntryCursor>> digest_entries(const lmdb::Txn& txn, IndexDigest& d,
                                                      const EntryCursor& from,
                                                      std::size_t max) const;
    // Adds the entries rcpt_gone lists to `d` (the records' side: they are there until the
    // sweep), at most `max` rcpt_gone entries per call from `from` (inclusive; empty: the first)
    // on: where to go on (empty when done).
    Result<std::optional<std::string>> digest_removed(const lmdb::Txn& txn, IndexDigest& d,
                                                      std::string_view from, std::size_t max) const;
    // The stored counters equal `scanned` (what the records add up to).
    Status check_counters(const lmdb::Txn& txn, const Counters& scanned,
                          const Problem& problem) const;

private:
    Status counter_add(lmdb::WriteTxn& txn, ClassId klass, MsgState state, std::int64_t dmsg,
                       std::int64_t dbytes) const;
    Status read_counters(const lmdb::Txn& txn, Counters& out, const Problem* malformed) const;
    Result<std::vector<TimedId>> time_scan(const lmdb::Txn& txn, lmdb::Dbi dbi, UnixMillis now,
                                           std::size_t max) const;
    // The entries of the indexes newer than format `after` (0: all of them).
    Status put_entries(lmdb::WriteTxn& txn, const MessageFacts& f, std::uint32_t after) const;
    // Message `id`'s entries wait for the sweep (it was removed).
    Result<bool> removed(const lmdb::Txn& txn, QueueId id) const;
    // Whether rcpt_gone lists `key` under `id`: an entry left for the sweep, not a problem.
    Result<bool> awaits_sweep(const lmdb::Txn& txn, QueueId id, std::string_view key) const;
    // Deletes the entries rcpt_gone lists under `id` now, and that entry: an id used again
    // (a clock stepped back) must not have its new entries swept.
    Status sweep_id(lmdb::WriteTxn& txn, QueueId id) const;

    Tables t_;
};

} // namespace spoold::spool
