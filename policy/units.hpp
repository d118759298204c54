// Parsing of the durations ("90s", "30d") and sizes ("50MiB", "10KB") written in the
// configuration. Pure text -> number; knows nothing of YAML or of which key is read.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include "common/result.hpp"

namespace spoold::policy {

// "<digits><unit>" with unit ms, s, m, h, d or w (m is minutes). A bare "0" is allowed;
// any other number needs a unit, because "30" could mean seconds or days.
// Errors: kInvalid with a message naming the accepted units.
Result<std::chrono::milliseconds> parse_duration(std::string_view text);

// "<digits>[unit]": no unit or B = bytes; KiB/MiB/GiB/TiB powers of 1024;
// KB/MB/GB/TB powers of 1000 (unit letters case-insensitive). Errors: kInvalid, also
// on overflow of 64 bits.
Result<std::uint64_t> parse_size(std::string_view text);

} // namespace spoold::policy
