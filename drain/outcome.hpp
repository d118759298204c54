// What a mailstore's reply means for each recipient of a delivery: delivered, failed,
// deferred with backoff, or still queued (the store's own trouble is no verdict). Pure
// functions of the reply, the configuration and the time; nothing is written here.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "common/clock.hpp"
#include "drain/mailstore.hpp"
#include "policy/config.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

// Per-recipient retry delay after a 4xx: retry_min doubled per earlier attempt, capped.
std::chrono::milliseconds retry_delay(const policy::DrainConfig& config, std::uint32_t attempts);

// What a delivery result means for each recipient in `indexes` (positions in the
// envelope), at `now`. Session-level mailstore trouble leaves recipients queued and
// uncounted; see the .cpp for the table.
std::vector<spool::RecipientUpdate> map_result(const spool::Envelope& env,
                                               const std::vector<std::uint32_t>& indexes,
                                               const DeliveryResult& result,
                                               const policy::DrainConfig& config, UnixMillis now);

} // namespace spoold::drain
