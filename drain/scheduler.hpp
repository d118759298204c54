// Chooses the next message to deliver: a strict class first, then weighted classes by smooth
// weighted round robin, FIFO within a class, at most max_per_recipient deliveries in flight
// per recipient, never a leased message. It reads the spool's ready-by-domain index one lane
// (class, domain) at a time and skips whole lanes whose mailstore has no room, so a down
// store's backlog costs nothing; it writes nothing and does not deliver.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "common/queue_id.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

struct SchedulerOptions {
    // Weight per ClassId (index); classes beyond the vector (left over from an older
    // configuration) are served with weight 1 so their mail is not stranded.
    std::vector<std::uint32_t> weights{8, 4, 1};
    std::optional<spool::ClassId> strict_class;
    std::uint32_t max_per_recipient = 4;
    std::size_t batch = 128;        // ids read from a lane at a time
    std::size_t scan_budget = 1024; // most envelopes examined by one next() per class
    // The lanes' domains are read again this often, and the spool's ready epoch (bumped by
    // hold/release/flush/set-class, also from spoolctl) checked: it restarts every lane.
    std::chrono::milliseconds refresh{std::chrono::seconds(1)};
};

struct Pick {
    QueueId id;
    spool::ClassId klass = 0;
    std::uint32_t flags = 0; // the envelope's (spool::kFlagDsn ...)
};

// What the drain routes a candidate on: its id, queued recipients (lower-cased) and
// flags. Returns whether it can be delivered now (some mailstore it goes to has room).
using Admit = std::function<bool(QueueId id, const std::vector<std::string>& recipients,
                                 std::uint32_t flags)>;
// Whether mail for this domain of the ready-by-domain index (spool::record::kDsnDomain for
// our DSNs) could be delivered now: its mailstore has room.
using DomainRoom = std::function<bool(std::string_view domain)>;

// Ids kept for a second look at most, per lane and in total; past that the lanes are read
// again from the start instead (a mass promotion, thousands of poison suspects).
inline constexpr std::size_t kMaxRevisit = 4096;
inline constexpr std::size_t kMaxRecheck = 65'536;

class Scheduler {
public:
    Scheduler(spool::Spool& spool, SchedulerOptions options, const Clock& clock);

    // The next message to deliver, leased until release(); nullopt when nothing is eligible
    // now (empty, all leased, every candidate's recipient at its cap, or no room). Spool read
    // errors are logged and treated as "nothing now". `admit`, when given, skips candidates it
    // refuses for now, as a busy recipient is; `room`, when given, skips whole lanes.
    //
    // Cost: each ready message is examined once per pass of its lane's cursor. A candidate
    // blocked by a busy recipient is parked under that recipient and found again through the
    // spool's recipient index when it has a free slot; one passed while leased or refused by
    // `admit` is kept for a second look. Cursors start again only when the spool says mail may
    // have become ready behind them (the ready epoch), after recheck() overflows, or refresh();
    // mail that does so otherwise (promoted, released, committed late) comes through recheck().
    std::optional<Pick> next(const Admit& admit = {}, const DomainRoom& room = {});
    // Leases a message outside next() (expiry, the DSN lane); false when already leased.
    bool lease(QueueId id) { return leases_.try_emplace(id.value).second; }
    // The queued recipients (lower-cased) a lease from next() was taken for; empty for a lease
    // taken by lease() or none.
    const std::vector<std::string>& leased_recipients(QueueId id) const;
    // Ends the lease taken by next() or lease(); the message may be handed out again (it is
    // looked at again, in case some of it is still ready).
    void release(QueueId id);
    bool leased(QueueId id) const { return leases_.contains(id.value); }
    std::size_t leases() const { return leases_.size(); }
    // In-flight deliveries to `address` (case-insensitive); for tests and status.
    std::uint32_t in_flight_to(const std::string& address) const;
    // Messages that may have become ready behind the cursors (promoted deferrals): looked at
    // again by the next picks.
    void recheck(const std::vector<QueueId>& ids);
    // A message just enqueued. Ids are taken when a message starts to arrive, so one that
    // took longer commits after later ids the cursors may have passed: such a message is
    // rechecked; one above everything read so far is found by the cursors, at no cost.
    void arrived(QueueId id);

    void reconfigure(SchedulerOptions options);
    // Every lane starts again from the front and the domains are read again.
    void refresh();

private:
    struct Candidate {
        QueueId id;
        std::vector<std::string> recipients; // queued recipients, lower-cased
        std::uint32_t flags = 0;
    };
    struct Lane {
        std::string domain;
        QueueId cursor;               // ids up to here were read
        std::deque<Candidate> buffer; // read, not yet picked
        std::vector<QueueId> revisit; // behind the cursor, to be read again
        bool exhausted = false;       // the last read found nothing after the cursor
    };
    // A recipient at its cap with messages of a class the lanes went past: they are found
    // again through the recipient index once it has a free slot.
    struct Parked {
        QueueId walked;                // its messages up to here were looked at
        std::optional<Candidate> head; // the next one, found while it had a free slot
    };
    struct ClassQueue {
        std::map<std::string, Lane, std::less<>> lanes; // by domain
        UnixMillis domains_read_ms = -1;
        std::optional<QueueId> newest_at_read; // the spool's newest id when they were read
        bool restart = false;                  // every lane from the front at the next pick
        UnixMillis idle_until_ms = 0;
    };
    std::optional<Pick> pick_from(spool::ClassId klass, const Admit& admit, const DomainRoom& room);
    // Reads the class's domains into lanes (new lanes start at the front); true when a lane
    // was added. A failed read sets read_failed_.
    bool read_domains(spool::ClassId klass, UnixMillis now);
    void restart(ClassQueue& q);
    // The first eligible candidate of a lane, reading and sorting out what blocks; null when
    // the lane has none now (or the budget ran out).
    Candidate* lane_head(spool::ClassId klass, Lane& lane, const Admit& admit, std::size_t& budget);
    // The oldest eligible message of a parked recipient with a free slot.
    std::optional<Candidate> parked_head(spool::ClassId klass, const std::string& recipient,
                                         Parked& parked, const Admit& admit, const DomainRoom& room,
                                         std::size_t& budget, bool& done);
    // Reads `id` as a candidate of class `klass` (none: gone, held, elsewhere, nothing queued).
    std::optional<Candidate> read(spool::ClassId klass, QueueId id);
    // What keeps a candidate back: a recipient at its cap (returned), or admit's refusal.
    std::optional<std::string> busy_recipient(const Candidate& c) const;
    void park(spool::ClassId klass, const std::string& recipient);
    void add_revisit(spool::ClassId klass, const std::string& domain, QueueId id);
    // The ids of recheck() sorted into the lanes they belong to (a read each).
    void sort_rechecks(std::size_t& budget);
    void check_epoch();
    Pick take(spool::ClassId klass, Candidate c);
    std::uint32_t weight(spool::ClassId klass) const;
    bool configured(spool::ClassId klass) const { return klass < options_.weights.size(); }
    std::uint32_t cap() const { return std::max<std::uint32_t>(1, options_.max_per_recipient); }

    spool::Spool& spool_;
    SchedulerOptions options_;
    const Clock& clock_;
    std::vector<ClassQueue> classes_;
    std::vector<std::int64_t> current_; // smooth weighted round robin credit per class
    UnixMillis last_refresh_ms_ = 0;
    std::optional<std::string> epoch_; // the spool's ready epoch when last looked at
    bool read_failed_ = false;
    UnixMillis last_error_log_ms_ = 0;
    std::deque<QueueId> recheck_;
    QueueId passed_; // the highest id a cursor or a recipient's walk has read
    // (class, recipient) -> its walk; kept until the walk finds no more of its messages.
    std::map<std::pair<spool::ClassId, std::string>, Parked> parked_;
    std::unordered_map<std::uint64_t, std::vector<std::string>> leases_;
    std::unordered_map<std::string, std::uint32_t> per_recipient_;
};

} // namespace spoold::drain
