// The short forms of ages and sizes in spoolctl's tables ("2d04h", "4.2K"). Formatting
// only: spoolctl reads durations and sizes as the configuration does (policy/units).
#pragma once

#include <cstdint>
#include <string>

namespace spoold::spoolctl {

// "45s", "12m", "3h05m", "2d04h": two units at most, so a table column stays narrow.
std::string format_age(std::int64_t ms);
// "812", "4.2K", "13M", "1.1G".
std::string format_size(std::uint64_t bytes);

} // namespace spoold::spoolctl
