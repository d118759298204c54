// The date forms spoold writes, all in UTC: RFC 5322 (Received:, DSNs, spoolctl show),
// the asctime form of mbox From_ lines, and RFC 3339 with milliseconds (logs, JSON).
// Formatting only: no parsing and no clock.
#pragma once

#include <string>

#include "common/clock.hpp"

namespace spoold::date {

// "Sun, 2 Nov 2026 20:10:00 +0000" (RFC 5322 3.3: the day without a leading zero).
std::string rfc5322(UnixMillis ms);
// "Sun Nov  2 20:10:00 2026" (asctime: the day padded with a space to two columns).
std::string asctime(UnixMillis ms);
// "2026-11-02T20:10:00.123Z" (RFC 3339, milliseconds always written).
std::string iso8601(UnixMillis ms);

} // namespace spoold::date
