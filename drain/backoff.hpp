// Backoff arithmetic shared by the breaker's probes, per-recipient retries and the trouble
// groups' probes: doubling between bounds, and "equal jitter". No clock and no state.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace spoold::drain {

// `min` doubled `steps` times, at most `max` (and never below 1 ms or `min`).
inline std::chrono::milliseconds doubled(std::chrono::milliseconds min,
                                         std::chrono::milliseconds max, std::uint32_t steps) {
    const std::int64_t lo = std::max<std::int64_t>(1, min.count());
    const std::int64_t hi = std::max<std::int64_t>(lo, max.count());
    std::int64_t d = lo;
    for (std::uint32_t i = 0; i < steps && d < hi; ++i) {
        d *= 2;
    }
    return std::chrono::milliseconds(std::min(d, hi));
}

// Half of `step` fixed, half random: many waiters that started together (a fleet that lost
// the same store, the groups of one node) spread out, yet none waits less than half a step.
inline std::chrono::milliseconds equal_jitter(std::chrono::milliseconds step,
                                              std::mt19937_64& rng) {
    const std::int64_t s = step.count();
    std::uniform_int_distribution<std::int64_t> jitter(0, s / 2);
    return std::chrono::milliseconds(s - s / 2 + jitter(rng));
}

} // namespace spoold::drain
