// What one delivery's result says about its mailstore: it feeds the breaker and pacing,
// or, when the message itself is judged the trouble (poison), turns the result into that
// message's own temporary failure. It delivers and records nothing.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/clock.hpp"
#include "common/queue_id.hpp"
#include "drain/mailstore.hpp"
#include "drain/poison_tracker.hpp"
#include "drain/store.hpp"

namespace spoold::drain {

// `result` of delivering message `id` (started at `started`) to store number `index`;
// `grouped` of its recipients' trouble replies are a known trouble group's (the breaker does
// not count them). Returns true when the message was judged poison; `result` then no longer
// says mailstore trouble and its session reply, if any, is transient.
bool weigh_result(Store& store, std::size_t index, PoisonTracker& poison, QueueId id,
                  UnixMillis started, DeliveryResult& result, std::uint32_t grouped);

} // namespace spoold::drain
