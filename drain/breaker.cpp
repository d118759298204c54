#include "drain/breaker.hpp"

#include <algorithm>
#include <limits>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "drain/backoff.hpp"

namespace spoold::drain {

std::string_view to_string(BreakerState s) {
    switch (s) {
    case BreakerState::kClosed: return "closed";
    case BreakerState::kOpen: return "open";
    case BreakerState::kHalfOpen: return "half-open";
    }
    return "unknown";
}

Breaker::Breaker(std::string mailstore, BreakerOptions options, const Clock& clock,
                 std::uint64_t seed)
    : mailstore_(std::move(mailstore)), options_(options), clock_(clock), rng_(seed) {}

std::uint32_t Breaker::concurrency_cap() const {
    switch (state_) {
    case BreakerState::kClosed: return std::numeric_limits<std::uint32_t>::max();
    case BreakerState::kOpen: return 0;
    case BreakerState::kHalfOpen: return std::max<std::uint32_t>(1, options_.half_open_concurrency);
    }
    return 0;
}

bool Breaker::probe_due() const {
    return state_ == BreakerState::kOpen && !probe_running_ && clock_.now_ms() >= next_probe_ms_;
}

void Breaker::on_success() {
    consecutive_trouble_ = 0;
    if (state_ != BreakerState::kHalfOpen) {
        // A late answer from a delivery started before the breaker opened proves little:
        // only probes decide when an open breaker may try again.
        return;
    }
    if (++half_open_ok_ >= std::max<std::uint32_t>(1, options_.half_open_successes)) {
        probe_failures_ = 0;
        transition(BreakerState::kClosed);
    }
}

void Breaker::on_trouble() {
    switch (state_) {
    case BreakerState::kOpen:
        return; // already down; a late failure must not push the next probe further out
    case BreakerState::kHalfOpen:
        // The probe lied (or the store relapsed): back off further than last time so a
        // flapping store is not hammered.
        ++probe_failures_;
        open();
        return;
    case BreakerState::kClosed:
        if (++consecutive_trouble_ >= std::max<std::uint32_t>(1, options_.failures)) {
            probe_failures_ = 0;
            open();
        }
        return;
    }
}

void Breaker::roll_window() {
    const UnixMillis now = clock_.now_ms();
    const std::int64_t half = std::max<std::int64_t>(1, options_.window.count() / 2);
    if (now - window_start_ms_ < half) {
        return;
    }
    const bool adjacent = now - window_start_ms_ < 2 * half;
    answered_[1] = adjacent ? answered_[0] : 0;
    troubled_[1] = adjacent ? troubled_[0] : 0;
    answered_[0] = 0;
    troubled_[0] = 0;
    window_start_ms_ = now;
}

double Breaker::failure_ratio() const {
    const std::uint64_t troubled = troubled_[0] + troubled_[1];
    const std::uint64_t total = troubled + answered_[0] + answered_[1];
    return total == 0 ? 0.0 : static_cast<double>(troubled) / static_cast<double>(total);
}

void Breaker::on_recipients(std::uint32_t answered, std::uint32_t troubled, std::uint32_t grouped) {
    // A known group's trouble is being handled (its mail parked, one probe a step): it says
    // nothing new of the store, and counting it would let a dead shard met first (the oldest
    // mail all its own) or its refused probes stop the healthy mailboxes too. The store's own
    // trouble (full storage, a failing session) reaches on_trouble() instead.
    troubled -= std::min(grouped, troubled);
    roll_window();
    answered_[0] += answered;
    troubled_[0] += troubled;
    if (state_ != BreakerState::kClosed || troubled == 0) {
        // Half-open, the probe has just shown the session works: what its trial meets in
        // mailboxes is theirs (the oldest mail may all be a dead shard's), and reopening on
        // it would keep the store's healthy mailboxes waiting. Session trouble still reopens.
        return;
    }
    const std::uint64_t total = answered_[0] + answered_[1] + troubled_[0] + troubled_[1];
    if (total < std::max<std::uint32_t>(1, options_.window_samples) ||
        failure_ratio() < options_.failure_ratio) {
        return;
    }
    log::warn("event=breaker_failure_ratio mailstore={} ratio={:.2f} recipients={}",
              log::quote(mailstore_), failure_ratio(), total);
    probe_failures_ = 0;
    open();
}

void Breaker::on_probe_started() { probe_running_ = true; }

void Breaker::on_probe_result(bool ok) {
    probe_running_ = false;
    if (state_ != BreakerState::kOpen) {
        return;
    }
    if (ok) {
        half_open_ok_ = 0;
        transition(BreakerState::kHalfOpen);
        return;
    }
    ++probe_failures_;
    next_probe_ms_ = clock_.now_ms() + backoff().count();
    log::debug("event=breaker_probe_failed mailstore={} failures={} next_in_ms={}",
               log::quote(mailstore_), probe_failures_, next_probe_ms_ - clock_.now_ms());
}

void Breaker::open() {
    consecutive_trouble_ = 0;
    answered_[0] = answered_[1] = troubled_[0] = troubled_[1] = 0; // judged afresh when back
    half_open_ok_ = 0;
    next_probe_ms_ = clock_.now_ms() + backoff().count();
    transition(BreakerState::kOpen);
}

// Exponential in the number of failed probes, with equal jitter (backoff.hpp), so a fleet
// of spoolds that lost the same store does not probe it in lockstep.
std::chrono::milliseconds Breaker::backoff() {
    const std::chrono::milliseconds step =
        doubled(options_.min_backoff, options_.max_backoff, probe_failures_);
    const std::int64_t lo = std::max<std::int64_t>(1, options_.min_backoff.count());
    return std::max(equal_jitter(step, rng_), std::chrono::milliseconds(lo));
}

void Breaker::transition(BreakerState to) {
    if (to == state_) {
        return;
    }
    const BreakerState from = state_;
    state_ = to;
    metrics::spoold_metrics()
        .breaker_transitions_total.with({mailstore_, std::string(to_string(to))})
        .inc();
    if (to == BreakerState::kOpen) {
        log::warn("event=breaker mailstore={} from={} to={} next_probe_in_ms={}",
                  log::quote(mailstore_), to_string(from), to_string(to),
                  next_probe_ms_ - clock_.now_ms());
    } else {
        log::info("event=breaker mailstore={} from={} to={}", log::quote(mailstore_),
                  to_string(from), to_string(to));
    }
}

} // namespace spoold::drain
