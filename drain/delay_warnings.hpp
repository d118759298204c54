// Delay warnings (bounces.delay_warning): a message still waiting that long after arrival gets
// one RFC 3464 "delayed" DSN, spooled for the DSN lane, a batch per commit sized by BulkPacer.
// It decides no recipient's outcome and sends nothing; NOTIFY is the DSN builder's call.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "common/clock.hpp"
#include "common/queue_id.hpp"
#include "drain/bulk_pacer.hpp"
#include "drain/dsn_lane.hpp"
#include "drain/outcome_writer.hpp"
#include "policy/config.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

inline constexpr std::int64_t kDelayWarningIntervalMs = 1000;
// Envelopes read per turn at most, and so at most the warnings of one commit (fewer while
// commits are slow: BulkPacer).
inline constexpr std::size_t kDelayWarningBatch = spool::kMaxDelayWarningsPerOp;
// DSNs built between two turns of the I/O thread (SMTP shares it).
inline constexpr std::size_t kDelayWarningYieldEvery = 64;
// Arrival out of id order by more than this is looked after apart (spoolctl import, xfer:
// new ids, old arrivals); less (sessions that overlap) makes a warning that much late at most.
inline constexpr std::int64_t kDelayWarningSlackMs = 60'000;
// Out-of-order messages kept until their warning is due; past it the scout waits.
inline constexpr std::size_t kMaxEarlyWarnings = 65'536;

// Whether `env` is one a delay warning may be sent for at `now` under `bounces`: old
// enough, not warned yet, not one of our DSNs, not from the null sender, something waiting.
bool delay_warning_candidate(const policy::BounceConfig& bounces, const spool::Envelope& env,
                             UnixMillis now);

class DelayWarnings {
public:
    // `config` and `stopping` are the drain's own. Warnings go to `lane`; `wake` is called
    // when the drain should look again; `clock` times the commits, for the pacer.
    DelayWarnings(boost::asio::any_io_executor executor, spool::Spool& spool,
                  OutcomeWriter& outcomes, DsnLane& lane,
                  const std::shared_ptr<const policy::Config>& config, const bool& stopping,
                  std::function<void()> wake, const Clock& clock);

    // Messages are walked in queue-id order, which is arrival order for the intake's mail,
    // a batch per turn (the pacer's size, at most kDelayWarningBatch): the walk stops at the first
    // one too young and resumes there. Past it a scout reads each message once, for those whose
    // arrival is older than a lower id's by more than kDelayWarningSlackMs (imported or moved with
    // spoolctl: a new id, an old arrival), which the walk would reach only when the mail before
    // them is due: it warns those due now and keeps the others (at most kMaxEarlyWarnings) until
    // they are. The batch's warnings are built (yielding to the I/O thread every
    // kDelayWarningYieldEvery) and spooled in one commit; the next batch follows at once. A
    // restart walks again from the oldest; the kFlagDelayWarned flag, written with the
    // warning, keeps it to one per message.
    void tick(UnixMillis now);
    bool running() const { return running_; }
    // A batch runs, or (after tick(now)) the walk has more to read at once: a page without a
    // candidate starts no batch, yet the walk goes on at the next turn.
    bool busy(UnixMillis now) const {
        return running_ || (config_->bounces.delay_warning && now >= next_ms_);
    }
    std::uint64_t sent() const { return sent_; }

private:
    boost::asio::awaitable<void> warn(std::vector<spool::Envelope> batch);
    // The scout's turn past the walk's stop: out-of-order messages due now into `batch`.
    // A failed read is logged and tried again at the next turn.
    void scout(UnixMillis now, std::vector<spool::Envelope>& batch);
    // Kept out-of-order messages whose warning is due now, into `batch`.
    void take_early(UnixMillis now, std::vector<spool::Envelope>& batch);

    boost::asio::any_io_executor executor_;
    spool::Spool& spool_;
    OutcomeWriter& outcomes_;
    DsnLane& lane_;
    const std::shared_ptr<const policy::Config>& config_;
    const bool& stopping_;
    std::function<void()> wake_;
    const Clock& clock_;
    BulkPacer pacer_{kDelayWarningBatch};
    QueueId cursor_{};             // messages up to it were looked at
    QueueId scout_{};              // the scout has read the messages up to it
    UnixMillis scout_arrival_ = 0; // the latest arrival the scout has read since the walk's stop
    std::multimap<UnixMillis, QueueId> early_; // out of order: when each warning is due
    UnixMillis next_ms_ = 0;
    bool running_ = false;
    std::uint64_t sent_ = 0;
};

} // namespace spoold::drain
