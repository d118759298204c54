// The sweep of the recipient-index entries that removed messages leave behind
// (Spool::sweep_removed_recipients): looks every second, then runs batch after batch, each sized
// by its own BulkPacer, while any wait, but only while no other bulk job (promotion, expiry,
// delay warnings) runs: intake and those go first. Deletes index entries, never a message.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>

#include "common/clock.hpp"
#include "drain/bulk_pacer.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

inline constexpr std::int64_t kSweepIntervalMs = 1000; // between looks when none waited
// Removed messages per sweep transaction (a message has 1-3 recipient keys; the spool stops
// at about spool::kMaxSweepKeysPerOp keys whatever this says).
inline constexpr std::size_t kMaxSweepBatch = 4096;

class RecipientSweep {
public:
    // `stopping` is the drain's own; `wake` is called when a batch ended (the drain looks again).
    RecipientSweep(boost::asio::any_io_executor executor, spool::Spool& spool, const bool& stopping,
                   std::function<void()> wake, const Clock& clock);

    // The first look is due at `now`.
    void start(UnixMillis now) { next_ms_ = now; }
    // When a look is due, none runs and `others_busy` (another bulk job runs or has more to
    // do) is false: reads how many wait and starts a batch.
    void tick(UnixMillis now, bool others_busy);
    bool running() const { return running_; }
    // Removed messages whose entries this drain swept.
    std::uint64_t swept() const { return swept_; }

private:
    boost::asio::any_io_executor executor_;
    spool::Spool& spool_;
    const bool& stopping_;
    std::function<void()> wake_;
    const Clock& clock_; // times the commits, for pacer_
    BulkPacer pacer_{kMaxSweepBatch};
    UnixMillis next_ms_ = 0;
    bool running_ = false;
    std::uint64_t swept_ = 0;
};

} // namespace spoold::drain
