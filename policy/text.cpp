#include "policy/text.hpp"

#include <algorithm>
#include <cctype>

namespace spoold::policy {

bool valid_domain(std::string_view d) {
    constexpr std::size_t kMaxDomain = 253;
    if (d.empty() || d.size() > kMaxDomain || d.front() == '.' || d.back() == '.' ||
        d.find("..") != std::string_view::npos) {
        return false;
    }
    return std::all_of(d.begin(), d.end(), [](unsigned char c) {
        return std::isalnum(c) != 0 || c == '-' || c == '.' || c == '_';
    });
}

} // namespace spoold::policy
