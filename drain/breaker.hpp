// Circuit breaker for one mailstore: decides whether deliveries may go out and when to
// probe a mailstore that is down. Pure state driven by a Clock; it runs no probes and
// sets no timers itself (the drain engine asks it what to do and reports back).
#pragma once

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include "common/clock.hpp"

namespace spoold::drain {

enum class BreakerState : std::uint8_t {
    kClosed,   // healthy: deliveries under the pacing limit
    kOpen,     // down: nothing is delivered, probes run with exponential backoff
    kHalfOpen, // a probe succeeded: a few deliveries test the water before closing
};
std::string_view to_string(BreakerState s);

struct BreakerOptions {
    std::uint32_t failures = 3; // consecutive trouble signals that open it
    std::chrono::milliseconds min_backoff{std::chrono::seconds(1)};
    std::chrono::milliseconds max_backoff{std::chrono::minutes(5)};
    // Successful deliveries in half-open that close it again.
    std::uint32_t half_open_successes = 3;
    // Deliveries in flight while half-open: low, so a sick store is not flooded.
    std::uint32_t half_open_concurrency = 1;
    // The store as a whole is failing when at least this share of the recipients it
    // answered within `window` got trouble replies no trouble group handles yet, over at
    // least `window_samples` of them: a store that still talks but fails mailbox after
    // mailbox in ways not seen before opens the breaker, a dead shard behind it (a minority
    // of mailboxes, or one group of them met first) does not.
    double failure_ratio = 0.8;
    std::uint32_t window_samples = 10;
    std::chrono::milliseconds window{std::chrono::seconds(30)};
};

class Breaker {
public:
    Breaker(std::string mailstore, BreakerOptions options, const Clock& clock,
            std::uint64_t seed = std::random_device{}());

    BreakerState state() const { return state_; }
    // Whether deliveries may be started now (closed or half-open).
    bool admits() const { return state_ != BreakerState::kOpen; }
    // Most deliveries in flight the breaker allows; 0 when open, unlimited when closed.
    std::uint32_t concurrency_cap() const;
    // Open and the backoff has elapsed: the engine should run one probe now.
    bool probe_due() const;
    UnixMillis next_probe_ms() const { return next_probe_ms_; }
    // Current backoff step (0 for the first probe after opening); for status.
    std::uint32_t probe_failures() const { return probe_failures_; }

    // A delivery got an answer from the mailstore (any per-recipient 2xx/4xx/5xx).
    void on_success();
    // A delivery or probe said the mailstore itself is in trouble.
    void on_trouble();
    // A delivery's recipients: `answered` got replies without trouble, `troubled` replies
    // that say trouble for their mailbox, `grouped` of those a trouble group handles already
    // (their mail parked behind its probe: a dead shard known, or its probe refused again),
    // which count neither for nor against the store. Opens a closed breaker when the window's
    // ratio of the other troubled ones says the store as a whole is failing; a minority of
    // troubled mailboxes never does, nor does any in half-open (the probe showed the session
    // works).
    void on_recipients(std::uint32_t answered, std::uint32_t troubled, std::uint32_t grouped);
    // The window's share of troubled recipients, 0 when it is empty; for tests and logs.
    double failure_ratio() const;
    // The engine marks a probe as started so it does not start a second one meanwhile.
    void on_probe_started();
    void on_probe_result(bool ok);

    void reconfigure(const BreakerOptions& options) { options_ = options; }

private:
    void transition(BreakerState to);
    void open();
    std::chrono::milliseconds backoff();
    void roll_window();

    std::string mailstore_;
    BreakerOptions options_;
    const Clock& clock_;
    std::mt19937_64 rng_;
    BreakerState state_ = BreakerState::kClosed;
    std::uint32_t consecutive_trouble_ = 0;
    std::uint32_t half_open_ok_ = 0;
    std::uint32_t probe_failures_ = 0;
    bool probe_running_ = false;
    UnixMillis next_probe_ms_ = 0;
    // The failure window: the current half and the one before it.
    UnixMillis window_start_ms_ = 0;
    std::uint64_t answered_[2] = {0, 0}; // [current, previous]
    std::uint64_t troubled_[2] = {0, 0};
};

} // namespace spoold::drain
