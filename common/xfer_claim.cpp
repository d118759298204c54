#include "common/xfer_claim.hpp"

#include <algorithm>
#include <charconv>
#include <fmt/format.h>

namespace spoold {
namespace {

constexpr std::size_t kMaxClassName = 64;

bool class_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

std::optional<UnixMillis> millis(std::string_view text) {
    UnixMillis v = 0;
    const auto* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, v);
    if (text.empty() || ec != std::errc() || ptr != end || v < 0 || text.front() == '-') {
        return std::nullopt;
    }
    return v;
}

} // namespace

std::string format_xfer_claim(const XferClaim& claim) {
    return fmt::format("{},{},{}", claim.class_name, claim.arrival_ms, claim.expires_ms);
}

std::optional<XferClaim> parse_xfer_claim(std::string_view value) {
    const auto first = value.find(',');
    const auto second = first == std::string_view::npos ? first : value.find(',', first + 1);
    if (second == std::string_view::npos) {
        return std::nullopt;
    }
    const std::string_view name = value.substr(0, first);
    if (name.empty() || name.size() > kMaxClassName ||
        !std::all_of(name.begin(), name.end(), class_char)) {
        return std::nullopt;
    }
    const auto arrival = millis(value.substr(first + 1, second - first - 1));
    const auto expires = millis(value.substr(second + 1));
    if (!arrival || !expires) {
        return std::nullopt;
    }
    return XferClaim{std::string(name), *arrival, *expires};
}

} // namespace spoold
