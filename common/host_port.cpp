#include "common/host_port.hpp"

#include <charconv>
#include <limits>

namespace spoold::host_port {

tl::expected<Parts, SplitError> split(std::string_view text) {
    Parts out;
    if (!text.empty() && text.front() == '[') {
        const std::size_t close = text.find(']');
        if (close == std::string_view::npos) {
            return tl::unexpected(SplitError::kUnclosedBracket);
        }
        out.host = text.substr(1, close - 1);
        if (close + 1 < text.size()) {
            if (text[close + 1] != ':') {
                return tl::unexpected(SplitError::kJunkAfterBracket);
            }
            out.port = text.substr(close + 2);
            out.has_port = true;
        }
        return out;
    }
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
        out.host = text;
        return out;
    }
    out.host = text.substr(0, colon);
    out.port = text.substr(colon + 1);
    out.has_port = true;
    return out;
}

std::optional<std::uint16_t> parse_port(std::string_view text) {
    unsigned value = 0;
    const char* const end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc() || ptr != end || value == 0 ||
        value > std::numeric_limits<std::uint16_t>::max()) {
        return std::nullopt;
    }
    return static_cast<std::uint16_t>(value);
}

} // namespace spoold::host_port
