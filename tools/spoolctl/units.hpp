// Human units for spoolctl: durations ("90s", "2h", "1d12h"), sizes ("10k", "5M") and
// the short forms shown in tables. Parsing only; no clock and no spool access here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace spoold::spoolctl {

// "30s", "15m", "2h", "3d", "1w", or sums of them ("1d12h"); a bare number is seconds.
// Returns milliseconds, or nullopt for anything else (including negatives and overflow).
std::optional<std::int64_t> parse_duration_ms(std::string_view text);

// "512", "10k", "5M", "1G" (powers of 1024, case-insensitive, optional trailing "B").
std::optional<std::uint64_t> parse_size(std::string_view text);

// "45s", "12m", "3h05m", "2d04h": two units at most, so a table column stays narrow.
std::string format_age(std::int64_t ms);
// "812", "4.2K", "13M", "1.1G".
std::string format_size(std::uint64_t bytes);

} // namespace spoold::spoolctl
