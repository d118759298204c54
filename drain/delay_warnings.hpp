// Delay warnings (bounces.delay_warning): a message still waiting that long after arrival
// gets one RFC 3464 "delayed" DSN, spooled for the DSN lane, a batch per commit. It decides
// no recipient's outcome and sends nothing itself; the NOTIFY decision is the DSN builder's.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "common/clock.hpp"
#include "common/queue_id.hpp"
#include "drain/dsn_lane.hpp"
#include "drain/outcome_writer.hpp"
#include "policy/config.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

inline constexpr std::int64_t kDelayWarningIntervalMs = 1000;
// Envelopes read per turn, and so at most the warnings of one commit.
inline constexpr std::size_t kDelayWarningBatch = spool::kMaxDelayWarningsPerOp;
// DSNs built between two turns of the I/O thread (SMTP shares it).
inline constexpr std::size_t kDelayWarningYieldEvery = 64;

// Whether `env` is one a delay warning may be sent for at `now` under `bounces`: old
// enough, not warned yet, not one of our DSNs, not from the null sender, something waiting.
bool delay_warning_candidate(const policy::BounceConfig& bounces, const spool::Envelope& env,
                             UnixMillis now);

class DelayWarnings {
public:
    // `config` and `stopping` are the drain's own. Warnings go to `lane`; `wake` is called
    // when the drain should look again.
    DelayWarnings(boost::asio::any_io_executor executor, spool::Spool& spool,
                  OutcomeWriter& outcomes, DsnLane& lane,
                  const std::shared_ptr<const policy::Config>& config, const bool& stopping,
                  std::function<void()> wake);

    // Messages are walked in queue-id order, which is arrival order, kDelayWarningBatch per
    // turn: the walk stops at the first one too young and resumes there. The batch's warnings
    // are built (yielding to the I/O thread every kDelayWarningYieldEvery) and spooled in one
    // commit; the next batch follows at once. A restart walks again from the oldest; the
    // kFlagDelayWarned flag, written with the warning, keeps it to one per message.
    void tick(UnixMillis now);
    bool running() const { return running_; }
    std::uint64_t sent() const { return sent_; }

private:
    boost::asio::awaitable<void> warn(std::vector<spool::Envelope> batch);

    boost::asio::any_io_executor executor_;
    spool::Spool& spool_;
    OutcomeWriter& outcomes_;
    DsnLane& lane_;
    const std::shared_ptr<const policy::Config>& config_;
    const bool& stopping_;
    std::function<void()> wake_;
    QueueId cursor_{}; // messages up to it were looked at
    UnixMillis next_ms_ = 0;
    bool running_ = false;
    std::uint64_t sent_ = 0;
};

} // namespace spoold::drain
