// The durable queue: messages, their recipients and bodies on one LMDB environment,
// with indexes and counters kept in the same transactions. Every write goes through
// one group-commit writer thread. Knows nothing of SMTP, Asio or YAML: to the spool a
// priority class is a small integer and a mailstore does not exist.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.hpp"
#include "common/queue_id.hpp"
#include "common/result.hpp"

namespace spoold::spool {

using ClassId = std::uint8_t;
inline constexpr std::size_t kMaxClasses = 16;

// Per-recipient state. Delivered/failed/expired recipients are final.
enum class RcptState : std::uint8_t {
    kQueued = 0,    // waiting for a delivery attempt
    kDeferred = 1,  // last attempt got a transient failure; next_attempt_ms says when to retry
    kDelivered = 2, // the mailstore said 2xx
    kFailed = 3,    // the mailstore said 5xx (a DSN was generated if asked for)
    kExpired = 4,   // retention ran out
};
bool is_final(RcptState s);
std::string_view to_string(RcptState s);

// Message state as indexed and counted. A message is in exactly one state.
enum class MsgState : std::uint8_t {
    kReady = 0,    // in the ready index of its class
    kDeferred = 1, // in the deferred index at min(next_attempt_ms) of its deferred recipients
    kHeld = 2,     // in no delivery index until released
};
inline constexpr std::size_t kNumMsgStates = 3;
std::string_view to_string(MsgState s);

// RFC 3461 NOTIFY bits; 0 means the client gave no NOTIFY.
enum NotifyBits : std::uint8_t {
    kNotifyNever = 1,
    kNotifySuccess = 2,
    kNotifyFailure = 4,
    kNotifyDelay = 8,
};

// Envelope flags.
enum EnvelopeFlags : std::uint32_t {
    kFlagDsn = 1,          // this message is a DSN we generated
    kFlagSmtpUtf8 = 2,     // SMTPUTF8 was given at MAIL
    kFlag8BitMime = 4,     // BODY=8BITMIME
    kFlagExpiredHold = 8,  // held because retention ran out with action "hold"
    kFlagDelayWarned = 16, // its delay warning (bounces.delay_warning) was spooled
};

struct Recipient {
    std::string address;     // RCPT TO address without angle brackets
    std::string orcpt;       // RFC 3461 ORCPT parameter as given (xtext-decoded), may be empty
    std::uint8_t notify = 0; // NotifyBits
    RcptState state = RcptState::kQueued;
    UnixMillis next_attempt_ms = 0;
    std::uint32_t attempts = 0;
    std::string last_response; // last reply from the mailstore, one line

    friend bool operator==(const Recipient&, const Recipient&) = default;
};

struct Envelope {
    QueueId id;
    UnixMillis arrival_ms = 0;
    ClassId klass = 0;
    std::uint64_t size = 0;  // body bytes stored (including our Received: header)
    std::string mail_from;   // reverse path without brackets; empty = null sender
    std::string mail_params; // MAIL FROM ESMTP parameters as received, for the record
    std::string ret;         // RFC 3461 RET: "FULL", "HDRS" or empty
    std::string envid;       // RFC 3461 ENVID (xtext-decoded), may be empty
    std::string client_addr; // "203.0.113.5" or "2001:db8::1"
    std::string helo;
    std::string tls; // "TLSv1.3 cipher=..." or empty when the session was plain
    bool held = false;
    // Why it is held when a mail filter quarantined it at intake (the filter's reason);
    // cleared by a release. Empty for every other message.
    std::string hold_reason;
    UnixMillis expires_ms = 0; // arrival + class retention; 0 = never
    std::uint32_t flags = 0;   // EnvelopeFlags
    std::vector<Recipient> recipients;

    friend bool operator==(const Envelope&, const Envelope&) = default;
};

// The state a message is indexed and counted under, derived from its fields.
MsgState message_state(const Envelope& env);
// Earliest next_attempt_ms among deferred recipients (0 when none).
UnixMillis next_due(const Envelope& env);

struct Counters {
    std::array<std::array<std::uint64_t, kNumMsgStates>, kMaxClasses> messages{};
    std::array<std::array<std::uint64_t, kNumMsgStates>, kMaxClasses> bytes{};
    std::uint64_t total_messages() const;
    std::uint64_t total_bytes() const;
};

struct SpaceInfo {
    std::uint64_t map_size = 0;   // the configured maximum (LMDB map size)
    std::uint64_t used_bytes = 0; // pages the B-trees hold now (freed pages excluded)
    // Free space of the filesystem holding the spool plus the pages of the data file
    // that LMDB will reuse before it grows the file.
    std::uint64_t fs_free_bytes = 0;
};

// A delivery result for one recipient, by its index in Envelope::recipients.
struct RecipientUpdate {
    std::uint32_t index = 0;
    RcptState state = RcptState::kQueued;
    UnixMillis next_attempt_ms = 0; // for kDeferred
    std::string response;
    bool count_attempt = true; // false for results that were not a real attempt
};

// A complete new message to enqueue (body in memory; use staging for large ones).
struct NewMessage {
    Envelope envelope;
    std::string body;
    // Bytes stored in front of the body: with enqueue_staged, in front of the staged chunks
    // (a header section that could still change while the rest was being staged). Up to
    // 64Ki chunks (over 250 MiB); with enqueue, prefer putting everything into `body`.
    std::string head;
};

struct BodyPiece {
    std::string data;
    std::uint32_t next_chunk = 0; // pass back to continue
    bool done = false;            // true when data ends the body
};

struct SpoolOptions {
    std::string path;                            // directory holding data.mdb / lock.mdb
    std::uint64_t max_size_bytes = 64ULL << 30U; // LMDB map size: the file grows up to this
    std::size_t max_batch = 4096;                // most operations in one group commit
    bool create = true;                          // create the directory and environment if missing
    bool read_only = false;                      // spoolctl read verbs: no writer thread
    const Clock* clock = &SystemClock::instance();
    // Body chunk size. 0 = automatic: page size - 16, so each chunk fills exactly one LMDB
    // overflow page (see "Spool layout" in ARCHITECTURE.md). Other values are for the
    // benchmark's layout comparison; SIZE_MAX stores each body as one value.
    std::size_t body_chunk_bytes = 0;
};

// A message's class and expiry computed again from the current policy (spoolctl requeue).
struct Reclassification {
    ClassId klass = 0;
    UnixMillis expires_ms = 0; // 0 = never
    // The expiry is compared with this: a message held because its retention ran out
    // (kFlagExpiredHold) is released when its new expiry is later.
    UnixMillis now = 0;
    bool flush = false; // deferred recipients become queued now (as flush)
};

// Staged chunks untouched for this long are orphans of a crashed session: collected at open
// and periodically by the writer.
inline constexpr std::int64_t kStagedOrphanAgeMs = 60LL * 60 * 1000;
// promote_due moves at most this many messages per call (one transaction must stay small, as
// the intake's commits share it); call again while due() is not empty.
inline constexpr std::size_t kMaxPromotePerOp = 2'000;
// expire() applies at most this many items in one transaction; the rest fail kInvalid.
inline constexpr std::size_t kMaxExpirePerOp = 2'000;

// sweep_removed_recipients deletes at most about this many recipient-index keys in one
// transaction (at least one message's): the sweep shares the intake's group commit.
inline constexpr std::size_t kMaxSweepKeysPerOp = 16'384;

// Retention run out for one message, as the caller's policy decided it.
struct Expiry {
    QueueId id;
    bool hold = false;    // action "hold": held, flagged kFlagExpiredHold, out of the expiry index
    std::string response; // otherwise every waiting recipient expires with this last response
    std::optional<NewMessage> dsn; // enqueued in the same transaction (action "bounce")
};

// A delay warning (bounces.delay_warning) for message `id`: its DSN, spooled as the message
// is flagged kFlagDelayWarned.
struct DelayWarning {
    QueueId id;
    NewMessage dsn;
};
// record_delay_warnings applies at most this many in one transaction: a batch of DSN inserts
// that shares the intake's group commit must stay small.
inline constexpr std::size_t kMaxDelayWarningsPerOp = 256;

// One page of ids found through an index, and where the next page starts.
struct IdPage {
    std::vector<QueueId> ids;
    std::string resume; // pass back for the next page; empty when there is none
};

// meta key: changes (a big-endian counter) whenever a change other than enqueue or promote_due
// gives a message a ready-index entry it lacked: a release, set_class, flush, a reclassify that
// does so, also from another process. A hold or an expiry-only rewrite leaves it. Whoever
// follows the ready indexes with cursors (the drain's scheduler) looks again.
inline constexpr std::string_view kReadyEpochKey = "ready_epoch";

// Which of a mailbox's addresses a recipient lookup finds: the address itself (its messages in
// id order), or its "+tag" forms: the local part, the delimiter, anything (in address order).
enum class AddressForm { kExact, kTagged };

// What check() found. Problems are one line each, at most kMaxCheckProblems of them.
struct CheckReport {
    std::uint64_t records = 0;         // envelopes scanned
    std::uint64_t index_entries = 0;   // entries of every index seen
    std::vector<std::string> problems; // e.g. "ready index: class 2 id ... has no record"
    std::uint64_t more_problems = 0;   // problems found beyond the listed ones
    Counters scanned;                  // counters recomputed from the records
    // The check reads in short transactions; when the spool changed meanwhile (spoold was
    // working), the scan is not one snapshot and the counters were not compared with it.
    bool counters_compared = false;
    bool repaired = false;
    // Removed messages whose recipient-index entries wait for the sweep: expected, not a
    // problem (the check counts their entries as the records' side); a repair empties it.
    std::uint64_t removed_pending = 0;
};
inline constexpr std::size_t kMaxCheckProblems = 1000;

// Asynchronous completion: called on the writer thread after the commit returned
// (or failed). Keep it short: post to your own executor.
using Done = std::function<void(Status)>;
// The same for an operation on many messages: the batch's status, and (when the batch
// committed) each item's, in order.
using BatchDone = std::function<void(Status, std::vector<Status>)>;
// The same for an operation that acts on a number of things: how many.
using CountDone = std::function<void(Result<std::size_t>)>;

class Spool {
public:
    virtual ~Spool() = default;

    // Opens (or creates) the spool, runs mdb_reader_check, starts the writer thread.
    // Errors: kIo when the path is missing or not a spool, kCorrupt for a newer format.
    static Result<std::unique_ptr<Spool>> open(const SpoolOptions& options);

    virtual QueueId new_id() = 0;

    // Tells `listener` of every message this process's writes add to the spool: an enqueue
    // (staged or not), and a DSN spooled with an outcome, an expiry or a delay warning. Called
    // on the writer thread once the commit is on disk, before the operation's Done, with the
    // new message's id (keep it short: post). Ids are taken before the commit, so a message
    // can land behind ids a reader has passed already: this is how such a reader (the drain's
    // scheduler) hears of it (and, rarely, of one that was not added: the delay warning of a
    // message warned already). One listener; an empty one stops the calls and returns after a
    // call in progress ended. Another process's additions (spoolctl import) are not heard:
    // they move the ready epoch.
    using ArrivalListener = std::function<void(QueueId)>;
    // NOLINTNEXTLINE(performance-unnecessary-value-param): the default ignores its sink parameter
    virtual void on_arrival(ArrivalListener /*listener*/) {}

    // ---- writes: queued to the group-commit writer; `done` after the commit is on disk ----

    // Durably stores envelope, recipients, body, indexes and counters in one commit.
    // kSpoolFull when the map or disk is full (the environment stays usable).
    virtual void enqueue(NewMessage message, Done done) = 0;
    // Large bodies: stage chunks under an id before the envelope exists. Staged data is
    // invisible until enqueue_staged; orphans (crashed sessions) are removed later.
    virtual void append_staged(QueueId id, std::string chunk, Done done) = 0;
    // The body is message.head, the staged chunks, then message.body.
    virtual void enqueue_staged(NewMessage message, Done done) = 0;
    virtual void discard_staged(QueueId id, Done done) = 0;
    // NOLINTBEGIN(performance-unnecessary-value-param): defaults ignore their sink parameters
    // Applies delivery results; a message whose recipients are all final leaves the spool.
    // `dsn`, when given, is enqueued in the same transaction (never lost, never twice).
    virtual void record_outcome(QueueId id, std::vector<RecipientUpdate> updates,
                                std::optional<NewMessage> dsn, Done done) = 0;
    // Spools each item's delay warning and flags its message kFlagDelayWarned, up to
    // kMaxDelayWarningsPerOp items in one commit (more: kInvalid, nothing written). A message
    // flagged already gets no second one (its status ok, nothing written); one that is gone
    // is kNotFound, one quarantined kCorrupt: skipped, the rest commit.
    virtual void record_delay_warnings(std::vector<DelayWarning> /*items*/, BatchDone done) {
        done(fail(ErrorKind::kInternal, "record_delay_warnings not implemented"), {});
    }
    // A release (held false) also clears the hold reason.
    virtual void set_held(QueueId id, bool held, Done done) = 0;
    virtual void set_class(QueueId id, ClassId klass, Done done) = 0;
    // Deferred recipients become queued now; the message becomes ready (unless held).
    virtual void flush(QueueId id, Done done) = 0;
    // Sets class and expiry as the caller's policy computed them; see Reclassification.
    // A hold an administrator made stays. kInvalid for a class out of range.
    virtual void reclassify(QueueId /*id*/, Reclassification /*change*/, Done done) {
        done(fail(ErrorKind::kInternal, "reclassify not implemented"));
    }
    virtual void remove(QueueId id, Done done) = 0;
    // Moves up to `max` (at most kMaxPromotePerOp) messages whose deferral is due (<= now) from
    // the deferred index to ready. Goes ahead of the queued intake, so due mail never waits
    // behind it.
    virtual void promote_due(UnixMillis now, std::size_t max, Done done) = 0;
    // Applies retention to up to kMaxExpirePerOp messages in one transaction: one durable
    // commit for the lot. An item whose message is gone (kNotFound), whose expiry is not due at
    // `now` any more (kInvalid: set-class or a reload moved it) or that is quarantined
    // (kCorrupt) is skipped; its status says so. Ahead of the queued intake, as promotion.
    virtual void expire(std::vector<Expiry> /*items*/, UnixMillis /*now*/, BatchDone done) {
        done(fail(ErrorKind::kInternal, "expire not implemented"), {});
    }
    // Retention action "hold": held, flagged kFlagExpiredHold, out of the expiry index.
    virtual void hold_expired(QueueId id, Done done) = 0;
    virtual void put_meta(std::string key, std::string value, Done done) = 0;
    // A message that leaves the spool (delivered, failed, expired, removed) leaves its
    // recipient-index entries behind, listed under its id in one entry of `rcpt_gone`: at 1M
    // messages the entries of one batch share no leaf pages, and deleting them at once dirtied
    // a page per entry. Readers skip them (recipient_page, recipient_after). This deletes the
    // entries of up to `max` removed messages (oldest first, at most about kMaxSweepKeysPerOp
    // keys) in key order in one transaction, and their rcpt_gone entries; `done` gets how many
    // messages' entries went. Behind the queued intake.
    virtual void sweep_removed_recipients(std::size_t /*max*/, CountDone done) {
        done(fail(ErrorKind::kInternal, "sweep_removed_recipients not implemented"));
    }
    // Removes staged chunks whose last append is older than `older_than` (orphans).
    virtual void gc_staged(UnixMillis /*older_than*/, Done done) {
        done(fail(ErrorKind::kInternal, "gc_staged not implemented"));
    }
    // NOLINTEND(performance-unnecessary-value-param)
    // Synchronous form of any write above: submits and waits for the commit.
    Status wait(const std::function<void(Done)>& submit);

    // ---- reads: each call is one short read transaction ----

    virtual Result<Counters> counters() = 0;
    virtual Result<std::optional<Envelope>> get(QueueId id) = 0;
    // Up to max_bytes of body starting at chunk `from_chunk` (0 = start).
    virtual Result<BodyPiece> read_body(QueueId id, std::uint32_t from_chunk,
                                        std::size_t max_bytes) = 0;
    // Ready message ids of one class in arrival order, strictly after `after`.
    virtual Result<std::vector<QueueId>> ready_after(ClassId klass, QueueId after,
                                                     std::size_t max) = 0;
    // Deferred message ids whose next attempt is due at or before `now`.
    virtual Result<std::vector<QueueId>> due(UnixMillis now, std::size_t max) = 0;
    // Message ids whose expiry is at or before `now` (not yet acted on: a message leaves
    // the expiry index when it leaves the spool or through hold_expired).
    virtual Result<std::vector<QueueId>> expired(UnixMillis now, std::size_t max) = 0;

    // ---- reads through the format 2 indexes; kUnavailable on a format 1 spool opened
    // read-only (its writer upgrades it) ----

    // The spool's format version (tables.hpp's kFormatVersion once upgraded).
    virtual std::uint32_t format() const { return 0; }
    // Ids of the DSNs in the spool (any state), in id order strictly after `after`.
    virtual Result<std::vector<QueueId>> dsns_after(QueueId /*after*/, std::size_t /*max*/) {
        return fail(ErrorKind::kUnavailable, "no DSN index");
    }
    // Ids of messages with a recipient at `address` (ASCII case-insensitive, any recipient
    // state) or, kTagged, at its "+tag" forms with `delimiter`; one read transaction per page.
    virtual Result<IdPage> recipient_page(std::string_view /*address*/, AddressForm /*form*/,
                                          char /*delimiter*/, std::string_view /*resume*/,
                                          std::size_t /*max*/) {
        return fail(ErrorKind::kUnavailable, "no recipient index");
    }
    // Ids of messages with a recipient at exactly `address` (ASCII case-insensitive), in id
    // order strictly after `after`: one mailbox's mail, resumed by id.
    virtual Result<std::vector<QueueId>> recipient_after(std::string_view /*address*/,
                                                         QueueId /*after*/, std::size_t /*max*/) {
        return fail(ErrorKind::kUnavailable, "no recipient index");
    }
    // The domains (lower-cased, sorted) with ready mail of this class; "" for recipients
    // without a domain. One seek per domain, whatever the mail behind it.
    virtual Result<std::vector<std::string>> ready_domains(ClassId /*klass*/, std::size_t /*max*/) {
        return fail(ErrorKind::kUnavailable, "no ready-by-domain index");
    }
    // Ready ids of one class with a queued recipient in `domain`, in id order after `after`.
    virtual Result<std::vector<QueueId>> ready_in_domain(ClassId /*klass*/,
                                                         std::string_view /*domain*/,
                                                         QueueId /*after*/, std::size_t /*max*/) {
        return fail(ErrorKind::kUnavailable, "no ready-by-domain index");
    }
    // Removed messages whose recipient-index entries wait for sweep_removed_recipients (one
    // table statistic: O(1)); 0 for a spool of a format without them.
    virtual Result<std::uint64_t> removed_recipients_pending() { return std::uint64_t{0}; }
    // Envelopes in id order strictly after `after` (for listing and export).
    virtual Result<std::vector<Envelope>> envelopes_after(QueueId after, std::size_t max) = 0;
    virtual Result<std::optional<QueueId>> oldest() = 0;
    // The highest id in the spool: a bulk change that counted first acts on nothing newer.
    virtual Result<std::optional<QueueId>> newest() {
        return fail(ErrorKind::kInternal, "newest not implemented");
    }
    virtual Result<std::optional<std::string>> get_meta(std::string_view key) = 0;
    virtual Result<SpaceInfo> space() = 0;
    // Verifies that every index entry points at a record whose facts match its key, every
    // record is in exactly the indexes its facts call for, the counters equal the scan (when
    // the spool did not change during the check) and (with `bodies`) every body adds up to
    // Envelope::size. Short read transactions that resume by key, so a running check does
    // not make the file grow; memory is bounded (point lookups, no id sets). With `repair` (not
    // read-only), the writer then rebuilds the three indexes and the counters from the records in
    // one transaction and quarantines undecodable records; it never deletes a record or a body. The
    // report is what was found before the repair.
    virtual Result<CheckReport> check(bool /*bodies*/, bool /*repair*/) {
        return fail(ErrorKind::kInternal, "check not implemented");
    }
    // Ids of records moved to the `corrupt` table because they could not be decoded.
    virtual Result<std::vector<QueueId>> quarantined(std::size_t /*max*/) {
        return fail(ErrorKind::kInternal, "quarantined not implemented");
    }
};

} // namespace spoold::spool
