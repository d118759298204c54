#include "drain/pacing.hpp"

#include <algorithm>
#include <cmath>

namespace spoold::drain {
namespace {

// A tenth of a second of tokens: smooth enough for the store, and one token at least.
constexpr double kBurstSeconds = 0.1;

double burst_for(double rate) { return std::max(1.0, rate * kBurstSeconds); }

} // namespace

ConcurrencyLimit::ConcurrencyLimit(PacingOptions options, const Clock& clock)
    : options_(options), clock_(clock), limit_(0), window_start_ms_(clock.now_ms()) {
    restart();
}

std::uint32_t ConcurrencyLimit::limit() const {
    const auto cap = std::max<std::uint32_t>(1, options_.max_concurrency);
    const auto l = static_cast<std::uint32_t>(std::floor(limit_));
    return std::clamp<std::uint32_t>(l, 1, cap);
}

void ConcurrencyLimit::restart() {
    const auto cap = std::max<std::uint32_t>(1, options_.max_concurrency);
    limit_ = std::clamp<std::uint32_t>(options_.initial_concurrency, 1, cap);
    last_decrease_ms_ = clock_.now_ms();
    // Latency seen before an outage says nothing about the recovering store.
    best_current_ms_ = -1;
    best_previous_ms_ = -1;
    window_start_ms_ = clock_.now_ms();
}

void ConcurrencyLimit::reconfigure(const PacingOptions& options) {
    options_ = options;
    const auto cap = static_cast<double>(std::max<std::uint32_t>(1, options_.max_concurrency));
    limit_ = std::clamp(limit_, 1.0, cap);
}

std::int64_t ConcurrencyLimit::best_latency_ms() const {
    if (best_current_ms_ < 0) {
        return std::max<std::int64_t>(0, best_previous_ms_);
    }
    if (best_previous_ms_ < 0) {
        return best_current_ms_;
    }
    return std::min(best_current_ms_, best_previous_ms_);
}

void ConcurrencyLimit::note_latency(std::int64_t latency_ms) {
    const UnixMillis now = clock_.now_ms();
    if (now - window_start_ms_ >= kLatencyWindowMs) {
        best_previous_ms_ = best_current_ms_;
        best_current_ms_ = -1;
        window_start_ms_ = now;
    }
    if (best_current_ms_ < 0 || latency_ms < best_current_ms_) {
        best_current_ms_ = latency_ms;
    }
}

void ConcurrencyLimit::on_success(UnixMillis started_ms) {
    const std::int64_t latency = std::max<std::int64_t>(0, clock_.now_ms() - started_ms);
    const std::int64_t best = best_latency_ms();
    const bool known = best_current_ms_ >= 0 || best_previous_ms_ >= 0;
    note_latency(latency);
    if (known) {
        const double threshold = std::max(static_cast<double>(best) * kLatencyBlowup,
                                          static_cast<double>(best + kLatencySlackMs));
        if (static_cast<double>(latency) > threshold) {
            decrease(started_ms, kSlowDecrease);
            return;
        }
    }
    // Additive increase: +1 per limit's worth of healthy deliveries (one "round").
    const auto cap = static_cast<double>(std::max<std::uint32_t>(1, options_.max_concurrency));
    limit_ = std::min(cap, limit_ + 1.0 / std::max(1.0, limit_));
}

void ConcurrencyLimit::on_trouble(UnixMillis started_ms) { decrease(started_ms, kTroubleDecrease); }

void ConcurrencyLimit::decrease(UnixMillis started_ms, double factor) {
    if (started_ms < last_decrease_ms_) {
        return;
    }
    limit_ = std::max(1.0, std::floor(limit_ * factor));
    last_decrease_ms_ = clock_.now_ms();
}

RateLimiter::RateLimiter(double rate, const Clock& clock)
    : rate_(rate), capacity_(burst_for(rate)), clock_(clock), tokens_(capacity_),
      last_ms_(clock.now_ms()) {}

void RateLimiter::set_rate(double rate) {
    refill();
    rate_ = rate;
    capacity_ = burst_for(rate);
    tokens_ = std::min(tokens_, capacity_);
}

void RateLimiter::refill() const {
    const UnixMillis now = clock_.now_ms();
    if (now > last_ms_ && rate_ > 0) {
        tokens_ =
            std::min(capacity_, tokens_ + static_cast<double>(now - last_ms_) * rate_ / 1000.0);
    }
    last_ms_ = std::max(last_ms_, now);
}

bool RateLimiter::try_acquire() {
    if (unlimited()) {
        return true;
    }
    refill();
    if (tokens_ < 1.0) {
        return false;
    }
    tokens_ -= 1.0;
    return true;
}

UnixMillis RateLimiter::next_available_ms() const {
    const UnixMillis now = clock_.now_ms();
    if (unlimited()) {
        return now;
    }
    refill();
    if (tokens_ >= 1.0) {
        return now;
    }
    const double wait_ms = std::ceil((1.0 - tokens_) * 1000.0 / rate_);
    return now + static_cast<std::int64_t>(wait_ms);
}

} // namespace spoold::drain
