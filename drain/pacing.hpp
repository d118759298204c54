// How fast the drain may push into one mailstore: an adaptive concurrency limit (AIMD)
// and a token-bucket rate limit. Pure state driven by a Clock; it neither waits nor
// counts deliveries in flight (the engine does both and asks here).
//
// Why AIMD and not a gradient limit: a recovering store's latency is dominated by fsync
// and is noisy at low load, so a gradient on the latency ratio oscillates; AIMD needs only
// "was this delivery healthy", converges like TCP, and halves quickly when the store
// struggles. Healthy = no mailstore trouble and latency within kLatencyBlowup times the
// best latency of the last one or two windows (plus a small slack for fast stores).
#pragma once

#include <chrono>
#include <cstdint>

#include "common/clock.hpp"

namespace spoold::drain {

struct PacingOptions {
    std::uint32_t initial_concurrency = 2; // after recovery (slow start)
    std::uint32_t max_concurrency = 16;
};

// A delivery this many times slower than the best recent one means the store is queueing.
inline constexpr double kLatencyBlowup = 4.0;
// Below this much extra latency nothing is "blown up" (Maildir at 1 ms vs 3 ms is noise).
inline constexpr std::int64_t kLatencySlackMs = 50;
// The best latency is the minimum over the current and the previous window.
inline constexpr std::int64_t kLatencyWindowMs = 30'000;
// Multiplicative decrease factors: halve on trouble, back off gently on slowness.
inline constexpr double kTroubleDecrease = 0.5;
inline constexpr double kSlowDecrease = 0.75;

class ConcurrencyLimit {
public:
    ConcurrencyLimit(PacingOptions options, const Clock& clock);

    // Deliveries allowed in flight now: always in [1, max_concurrency].
    std::uint32_t limit() const;
    double raw_limit() const { return limit_; }

    // A delivery started at `started_ms` got answers from the store (any reply codes).
    void on_success(UnixMillis started_ms);
    // A delivery started at `started_ms` met mailstore trouble (timeout, 421, 4.3.x ...).
    void on_trouble(UnixMillis started_ms);
    // Slow start again (the breaker has just closed after an outage).
    void restart();
    void reconfigure(const PacingOptions& options);

    // Best latency of recent windows, 0 when unknown; for status.
    std::int64_t best_latency_ms() const;

private:
    void decrease(UnixMillis started_ms, double factor);
    void note_latency(std::int64_t latency_ms);

    PacingOptions options_;
    const Clock& clock_;
    double limit_;
    // Decreases apply once per "round trip": a delivery started before the last decrease
    // was launched under the old limit, and punishing the limit again for it would
    // collapse it to 1 after one burst of slow replies.
    UnixMillis last_decrease_ms_ = 0;
    UnixMillis window_start_ms_ = 0;
    std::int64_t best_current_ms_ = -1;
    std::int64_t best_previous_ms_ = -1;
};

// Token bucket: `rate` tokens per second, up to a burst of a tenth of a second's worth
// (at least one). rate <= 0 means unlimited.
class RateLimiter {
public:
    RateLimiter(double rate, const Clock& clock);

    bool unlimited() const { return rate_ <= 0; }
    // Takes one token when one is available.
    bool try_acquire();
    // When the next token will be available (now when one is).
    UnixMillis next_available_ms() const;
    void set_rate(double rate);

private:
    void refill() const;

    double rate_;
    double capacity_;
    const Clock& clock_;
    mutable double tokens_;
    mutable UnixMillis last_ms_;
};

} // namespace spoold::drain
