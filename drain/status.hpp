// What the drain reports about itself: one snapshot for the status page, the metrics and
// the spool meta that spoolctl reads. Plain data; nothing here computes or decides.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "drain/breaker.hpp"
#include "drain/budget.hpp"

namespace spoold::drain {

struct MailstoreStatus {
    std::string name;
    BreakerState breaker = BreakerState::kClosed;
    UnixMillis next_probe_ms = 0;        // when open
    std::uint32_t concurrency_limit = 0; // what pacing and the breaker allow now
    std::uint32_t in_flight = 0;
    std::int64_t best_latency_ms = 0;
    bool paused = false; // by spoolctl pause --mailstore NAME (spool meta "paused.NAME")
    BudgetStatus budget; // the share of the fleet's budget this node holds
    // Recipients since start by outcome at this store, and messages with at least one
    // recipient delivered here.
    std::uint64_t delivered = 0;
    std::uint64_t deferred = 0;
    std::uint64_t failed = 0;
    std::uint64_t messages_delivered = 0;
};

struct DrainSnapshot {
    bool running = false;
    bool paused = false; // by pause() or by spoolctl (spool meta "paused" = "1")
    bool stopping = false;
    std::vector<MailstoreStatus> mailstores;
    // Recipients since start, by the outcome recorded for them.
    std::uint64_t delivered = 0;
    std::uint64_t deferred = 0;
    std::uint64_t failed = 0;
    std::uint64_t expired = 0;
    std::uint64_t delay_warnings = 0;     // delay warnings spooled by this process
    std::uint64_t poison = 0;             // deliveries deferred as poison (kPoisonStrikes)
    std::uint64_t messages_delivered = 0; // messages with at least one recipient delivered
    double rate_per_s = 0;                // messages_delivered per second, last 10 s
    // Turns of the drain's loop since start (each one housekeeping or a stop check): what
    // a test awaits to know the loop has looked again, instead of waiting real time.
    std::uint64_t loop_turns = 0;
    // Nothing in flight, no outcome waiting for its commit, no bulk job or probe running:
    // what a test awaits before it moves a fake clock again.
    bool idle = false;
};

} // namespace spoold::drain
