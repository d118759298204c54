// Retention: when a message expires (arrival + its class's retention) and what happens
// then (bounce, hold, discard), plus the delay-warning age. Arithmetic only: finding
// expired messages is the spool's index and acting on them is the daemon's job.
#pragma once

#include <cstdint>

#include "common/clock.hpp"
#include "policy/config.hpp"

namespace spoold::policy {

// arrival + retention of the class, saturating at the largest time. A class id the
// config does not know (a class removed by a reload while mail of it is queued) gets the
// default class's retention.
UnixMillis expiry_ms(const Config& config, std::uint8_t class_id, UnixMillis arrival_ms);

// The class's on_expiry; an unknown class id gives kHold: a config change must never
// bounce or discard mail by accident.
ExpiryAction expiry_action(const Config& config, std::uint8_t class_id);

// expires_ms 0 means never (as in spool::Envelope).
bool is_expired(UnixMillis expires_ms, UnixMillis now_ms);

// True when a delay warning is configured and the message, still undelivered, has been
// queued at least that long. Whether one was sent already is the caller's record.
bool delay_warning_due(const BounceConfig& bounces, UnixMillis arrival_ms, UnixMillis now_ms);

} // namespace spoold::policy
