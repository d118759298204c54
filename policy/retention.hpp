// Retention, the one rule: when a message expires (arrival + its class's retention, never
// when the retention is 0) and what happens then (bounce, hold, discard), plus the
// delay-warning age. Arithmetic only: finding messages is the spool's and the drain's job.
#pragma once

#include <cstdint>

#include "common/clock.hpp"
#include "policy/config.hpp"

namespace spoold::policy {

// An expiry time that never comes (as spool::Envelope::expires_ms 0).
inline constexpr UnixMillis kNeverExpires = 0;

// When a message of class `class_id` that arrived at `arrival_ms` expires under `config`:
// arrival + the class's retention, saturating at the largest time; kNeverExpires when that
// retention is 0 (the loader refuses 0; a Config built in code may hold it). A class id the
// config does not know (a class removed by a reload while mail of it is queued) gets the
// default class's retention. Callers: the intake and the DSN builder (a new message),
// spoolctl import, requeue and set-class, and the drain (at expiry time and in the review
// after a reload), which applies it against the configuration of the moment.
UnixMillis expiry_ms(const Config& config, std::uint8_t class_id, UnixMillis arrival_ms);

// The class's on_expiry; an unknown class id gives kHold: a config change must never
// bounce or discard mail by accident.
ExpiryAction expiry_action(const Config& config, std::uint8_t class_id);

// Whether every class has the same retention in both (a reload that changed one must
// compute the expiry of queued mail again).
bool same_retention(const Config& a, const Config& b);

// Whether an expiry time (kNeverExpires or a time) has come at `now_ms`.
bool is_expired(UnixMillis expires_ms, UnixMillis now_ms);

// True when a delay warning is configured and the message, still undelivered, has been
// queued at least that long. Whether one was sent already is the caller's record.
bool delay_warning_due(const BounceConfig& bounces, UnixMillis arrival_ms, UnixMillis now_ms);

} // namespace spoold::policy
