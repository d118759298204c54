#include "tools/spoolctl/units.hpp"

#include <array>
#include <fmt/format.h>

namespace spoold::spoolctl {
namespace {

constexpr std::int64_t kSecondMs = 1000;
constexpr std::int64_t kMinuteMs = 60 * kSecondMs;
constexpr std::int64_t kHourMs = 60 * kMinuteMs;
constexpr std::int64_t kDayMs = 24 * kHourMs;
constexpr std::uint64_t kKiB = 1024;

} // namespace

std::string format_age(std::int64_t ms) {
    if (ms < 0) {
        ms = 0; // clock skew between the writer and us: show "0s", not a negative age
    }
    if (ms < kMinuteMs) {
        return fmt::format("{}s", ms / kSecondMs);
    }
    if (ms < kHourMs) {
        return fmt::format("{}m", ms / kMinuteMs);
    }
    if (ms < kDayMs) {
        return fmt::format("{}h{:02}m", ms / kHourMs, (ms % kHourMs) / kMinuteMs);
    }
    return fmt::format("{}d{:02}h", ms / kDayMs, (ms % kDayMs) / kHourMs);
}

std::string format_size(std::uint64_t bytes) {
    constexpr std::array<char, 4> kUnits = {'K', 'M', 'G', 'T'};
    if (bytes < kKiB) {
        return fmt::format("{}", bytes);
    }
    double v = static_cast<double>(bytes);
    std::size_t i = 0;
    v /= static_cast<double>(kKiB);
    while (v >= static_cast<double>(kKiB) && i + 1 < kUnits.size()) {
        v /= static_cast<double>(kKiB);
        ++i;
    }
    constexpr double kOneDecimalBelow = 10.0;
    if (v < kOneDecimalBelow) {
        return fmt::format("{:.1f}{}", v, kUnits[i]);
    }
    return fmt::format("{:.0f}{}", v, kUnits[i]);
}

} // namespace spoold::spoolctl
