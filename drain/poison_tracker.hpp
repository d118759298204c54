// Which messages look like the cause of their store's trouble (poison messages): strikes
// per message, counted only across the store's health epochs (advanced by each successful
// delivery). It defers nothing and feeds no breaker: health.hpp acts on its verdict.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "common/queue_id.hpp"

namespace spoold::drain {

// A message whose delivery met mailstore trouble this many times while the store's
// breaker was closed, with other deliveries succeeding in between, is taken to be the
// trouble itself (a poison message: it crashes or hangs the store's delivery process).
// From then on its trouble defers it with backoff, counting an attempt, and no longer
// counts against the store's breaker and pacing. While the breaker is half-open, its
// test deliveries prefer messages without strikes, so such a message cannot keep a store
// that works from closing again.
inline constexpr std::uint32_t kPoisonStrikes = 3;
// Most messages whose strikes are remembered; beyond it the record starts afresh.
inline constexpr std::size_t kPoisonMemory = 100'000;

class PoisonTracker {
public:
    explicit PoisonTracker(std::size_t memory = kPoisonMemory) : memory_(memory) {}

    // Message `id` met mailstore trouble at `store` while its breaker was closed; true
    // when the message is now judged to be poison.
    bool strike(QueueId id, std::size_t store);
    // A delivery of `id` to `store` got answers: the store works (a new health epoch)
    // and the message's strikes are forgotten.
    void delivered(QueueId id, std::size_t store);
    // Whether `id` has strikes at `store`.
    bool suspect(QueueId id, std::size_t store) const;
    // Messages with strikes remembered.
    std::size_t remembered() const { return strikes_.size(); }

private:
    struct Strikes {
        std::uint32_t count = 0;
        std::uint64_t epoch = 0; // the store's health epoch at the last strike
        std::size_t store = 0;
    };
    std::uint64_t& epoch(std::size_t store);

    std::size_t memory_;
    std::unordered_map<std::uint64_t, Strikes> strikes_; // by queue id
    std::vector<std::uint64_t> epochs_;                  // by store
};

} // namespace spoold::drain
