// Retention: messages whose class's retention ran out get the class's action (bounce:
// expired, with a DSN; hold; discard), up to kExpiryBatch in one spool commit, batch after
// batch while more are due. Messages with a delivery in flight wait; nothing here delivers.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "common/clock.hpp"
#include "drain/dsn_lane.hpp"
#include "drain/outcome_writer.hpp"
#include "drain/scheduler.hpp"
#include "drain/stats.hpp"
#include "policy/config.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

inline constexpr std::int64_t kExpiryIntervalMs = 5000; // between looks when none was due
inline constexpr std::size_t kExpiryBatch = spool::kMaxExpirePerOp;

// The class's action; a class removed from the configuration keeps the safest: bounce.
policy::ExpiryAction expiry_action(const policy::Config& config, spool::ClassId klass);
// Updates that expire every recipient of `env` not final yet.
std::vector<spool::RecipientUpdate> expire_recipients(const spool::Envelope& env);

class Expiry {
public:
    // `config` and `stopping` are the drain's own. Expired recipients are counted in
    // `stats`, bounce DSNs go to `lane`, and `wake` is called when the drain should look
    // again (a DSN to send, a batch over).
    Expiry(boost::asio::any_io_executor executor, spool::Spool& spool, Scheduler& scheduler,
           OutcomeWriter& outcomes, DrainStats& stats, DsnLane& lane,
           const std::shared_ptr<const policy::Config>& config, const bool& stopping,
           std::function<void()> wake);

    // The first batch is due at `now`.
    void start(UnixMillis now) { next_ms_ = now; }
    // When a batch is due and none runs: reads the next one and starts on it.
    void tick(UnixMillis now);
    bool running() const { return running_; }

private:
    // Leases what it can of `ids`, builds their expiries (yielding to the I/O thread now and
    // then: a batch's DSNs take a while to build) and commits them at once.
    boost::asio::awaitable<void> expire_batch(std::vector<QueueId> ids, UnixMillis now);

    boost::asio::any_io_executor executor_;
    spool::Spool& spool_;
    Scheduler& scheduler_;
    OutcomeWriter& outcomes_;
    DrainStats& stats_;
    DsnLane& lane_;
    const std::shared_ptr<const policy::Config>& config_;
    const bool& stopping_;
    std::function<void()> wake_;
    UnixMillis next_ms_ = 0;
    bool running_ = false;
};

} // namespace spoold::drain
