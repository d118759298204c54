#include "tools/spoolctl/units.hpp"

#include <array>
#include <charconv>
#include <fmt/format.h>
#include <limits>

namespace spoold::spoolctl {
namespace {

constexpr std::int64_t kSecondMs = 1000;
constexpr std::int64_t kMinuteMs = 60 * kSecondMs;
constexpr std::int64_t kHourMs = 60 * kMinuteMs;
constexpr std::int64_t kDayMs = 24 * kHourMs;
constexpr std::int64_t kWeekMs = 7 * kDayMs;
constexpr std::uint64_t kKiB = 1024;

std::optional<std::int64_t> unit_ms(char unit) {
    switch (unit) {
    case 's': return kSecondMs;
    case 'm': return kMinuteMs;
    case 'h': return kHourMs;
    case 'd': return kDayMs;
    case 'w': return kWeekMs;
    default: return std::nullopt;
    }
}

} // namespace

std::optional<std::int64_t> parse_duration_ms(std::string_view text) {
    if (text.empty()) {
        return std::nullopt;
    }
    std::int64_t total = 0;
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::int64_t value = 0;
        const auto* begin = text.data() + pos;
        const auto [ptr, ec] = std::from_chars(begin, text.data() + text.size(), value);
        if (ec != std::errc{} || ptr == begin || value < 0) {
            return std::nullopt;
        }
        pos = static_cast<std::size_t>(ptr - text.data());
        std::int64_t unit = kSecondMs;
        if (pos < text.size()) {
            const auto u = unit_ms(text[pos]);
            if (!u) {
                return std::nullopt;
            }
            unit = *u;
            ++pos;
        } else if (total != 0) {
            return std::nullopt; // "1h30" is ambiguous: refuse rather than guess seconds
        }
        if (value > (std::numeric_limits<std::int64_t>::max() - total) / unit) {
            return std::nullopt;
        }
        total += value * unit;
    }
    return total;
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
    if (!text.empty() && (text.back() == 'b' || text.back() == 'B')) {
        text.remove_suffix(1);
    }
    std::uint64_t value = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || ptr == text.data()) {
        return std::nullopt;
    }
    std::uint64_t mult = 1;
    const std::string_view rest(ptr, static_cast<std::size_t>(text.data() + text.size() - ptr));
    if (rest.size() > 1) {
        return std::nullopt;
    }
    if (rest.size() == 1) {
        switch (rest[0]) {
        case 'k':
        case 'K': mult = kKiB; break;
        case 'm':
        case 'M': mult = kKiB * kKiB; break;
        case 'g':
        case 'G': mult = kKiB * kKiB * kKiB; break;
        default: return std::nullopt;
        }
    }
    if (value > std::numeric_limits<std::uint64_t>::max() / mult) {
        return std::nullopt;
    }
    return value * mult;
}

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
