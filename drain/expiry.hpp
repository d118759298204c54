// Retention applied (the rule is policy/retention): expired messages get their class's
// action, up to kExpiryBatch in one spool commit (fewer while commits are slow: BulkPacer),
// batch after batch while more are due; a
// reload that changed a retention has every expiry computed again. Nothing here delivers.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.hpp"
#include "drain/bulk_pacer.hpp"
#include "drain/dsn_lane.hpp"
#include "drain/outcome_writer.hpp"
#include "drain/scheduler.hpp"
#include "drain/stats.hpp"
#include "policy/config.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

inline constexpr std::int64_t kExpiryIntervalMs = 5000; // between looks when none was due
inline constexpr std::size_t kExpiryBatch = spool::kMaxExpirePerOp;
// Messages whose expiry a review computes again per loop turn (after a reload).
inline constexpr std::size_t kReviewBatch = 1024;
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
           std::function<void()> wake, const Clock& clock);

    // The first batch is due at `now`.
    void start(UnixMillis now) { next_ms_ = now; }
    // When a batch is due and none runs: reads the next one and starts on it.
    void tick(UnixMillis now);
    bool running() const { return running_; }
    // Called with the configuration a reload replaced: when a class's retention changed,
    // every queued message's expiry is computed again from its arrival, a batch per turn.
    void review(const policy::Config& before);
    bool reviewing() const { return review_.has_value(); }

private:
    // Starts `batch` as the running job.
    void run(boost::asio::awaitable<void> batch);
    // Leases what it can of `ids`, computes each expiry again from arrival, builds the
    // expiries of those still expired (yielding to the I/O thread now and then: a batch's
    // DSNs take a while to build) and commits them at once; writes back a later expiry.
    boost::asio::awaitable<void> expire_batch(std::vector<QueueId> ids, UnixMillis now);
    // Reads the review's next batch and starts writing what changed; false when the
    // review is over or its read failed.
    bool review_batch(UnixMillis now);
    // Writes the expiries computed again; a failure is logged as `failed_event`.
    boost::asio::awaitable<void>
    write_changes(std::vector<std::pair<QueueId, spool::Reclassification>> changes,
                  std::string_view failed_event);

    boost::asio::any_io_executor executor_;
    spool::Spool& spool_;
    Scheduler& scheduler_;
    OutcomeWriter& outcomes_;
    DrainStats& stats_;
    DsnLane& lane_;
    const std::shared_ptr<const policy::Config>& config_;
    const bool& stopping_;
    std::function<void()> wake_;
    const Clock& clock_; // times the commits, for pacer_
    BulkPacer pacer_{kExpiryBatch};
    UnixMillis next_ms_ = 0;
    bool running_ = false;
    std::optional<QueueId> review_; // the review's position (ids after it are left)
};

} // namespace spoold::drain
