#include "common/text.hpp"

namespace spoold::ascii {

std::string_view trim_left(std::string_view s, std::string_view chars) {
    const std::size_t first = s.find_first_not_of(chars);
    return first == std::string_view::npos ? std::string_view() : s.substr(first);
}

std::string_view trim_right(std::string_view s, std::string_view chars) {
    const std::size_t last = s.find_last_not_of(chars);
    return last == std::string_view::npos ? std::string_view() : s.substr(0, last + 1);
}

std::string_view trim(std::string_view s, std::string_view chars) {
    return trim_right(trim_left(s, chars), chars);
}

} // namespace spoold::ascii
