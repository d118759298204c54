// Chooses the next message to deliver: a strict class first, then weighted classes by
// smooth weighted round robin, FIFO within a class, at most max_per_recipient deliveries
// in flight per recipient, never a message that is already leased, and (through the
// drain's Admit filter) none whose mailstores all lack room. Reads the spool's ready
// index in bounded batches; it writes nothing and does not deliver.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
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
    std::size_t batch = 128;        // ids read from the ready index at a time, per class
    std::size_t scan_budget = 1024; // most envelopes examined by one next() per class
    // Every class cursor restarts from the front this often, so hold/flush/set-class done
    // by another process (spoolctl) are seen.
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

class Scheduler {
public:
    Scheduler(spool::Spool& spool, SchedulerOptions options, const Clock& clock);

    // The next message to deliver, leased until release(); nullopt when nothing is
    // eligible now (empty, all leased, or every candidate's recipient at its cap).
    // Spool read errors are logged and treated as "nothing now".
    // `admit`, when given, skips candidates it refuses for now, as a busy recipient is.
    std::optional<Pick> next(const Admit& admit = {});
    // Leases a message outside next() (expiry works on it); false when already leased.
    bool lease(QueueId id) { return leases_.try_emplace(id.value).second; }
    // The queued recipients (lower-cased) a lease from next() was taken for; empty for
    // a lease taken by lease() or none.
    const std::vector<std::string>& leased_recipients(QueueId id) const;
    // Ends the lease taken by next() or lease(); the message may be handed out again.
    void release(QueueId id);
    bool leased(QueueId id) const { return leases_.contains(id.value); }
    std::size_t leases() const { return leases_.size(); }
    // In-flight deliveries to `address` (case-insensitive); for tests and status.
    std::uint32_t in_flight_to(const std::string& address) const;

    void reconfigure(SchedulerOptions options);
    // Start class cursors again from the front (done by next() every `refresh`).
    void refresh();

private:
    struct Candidate {
        QueueId id;
        std::vector<std::string> recipients; // queued recipients, lower-cased
        std::uint32_t flags = 0;
    };
    struct ClassQueue {
        std::deque<Candidate> buffer;
        QueueId cursor;
        bool skipped = false; // candidates were dropped since the last restart
        UnixMillis idle_until_ms = 0;
    };

    std::optional<Pick> pick_from(spool::ClassId klass, const Admit& admit);
    // Reads the next batch after the cursor into the buffer; false when nothing was read.
    bool refill(spool::ClassId klass, std::size_t& budget);
    bool blocked(const Candidate& c, const Admit& admit) const;
    Pick take(spool::ClassId klass, std::deque<Candidate>::iterator it);
    std::uint32_t weight(spool::ClassId klass) const;
    bool configured(spool::ClassId klass) const { return klass < options_.weights.size(); }
    void restart(ClassQueue& q);

    spool::Spool& spool_;
    SchedulerOptions options_;
    const Clock& clock_;
    std::vector<ClassQueue> classes_;
    std::vector<std::int64_t> current_; // smooth weighted round robin credit per class
    UnixMillis last_refresh_ms_ = 0;
    bool read_failed_ = false;
    UnixMillis last_error_log_ms_ = 0;
    std::unordered_map<std::uint64_t, std::vector<std::string>> leases_;
    std::unordered_map<std::string, std::uint32_t> per_recipient_;
};

} // namespace spoold::drain
