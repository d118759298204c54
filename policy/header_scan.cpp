#include "policy/header_scan.hpp"

#include <algorithm>

#include "common/address.hpp"
#include "common/text.hpp"

namespace spoold::policy {
namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }

// RFC 5322 2.2: printable US-ASCII except colon. Blanks before the colon are obsolete
// syntax (RFC 5322 4.5) and are tolerated by trimming.
bool valid_name(std::string_view name) {
    return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u > ' ' && u < 127 && c != ':';
    });
}

} // namespace

bool header_name_equal(std::string_view a, std::string_view b) { return address::iequals(a, b); }

std::vector<HeaderField> scan_headers(std::string_view message, std::size_t max_bytes) {
    const bool whole = message.size() <= max_bytes;
    const std::string_view window = message.substr(0, std::min(message.size(), max_bytes));
    std::vector<HeaderField> fields;
    bool current_valid = false; // continuation lines belong to the last field only if it was kept
    std::size_t pos = 0;
    while (pos < window.size()) {
        const std::size_t lf = window.find('\n', pos);
        if (lf == std::string_view::npos && !whole) {
            break; // cut by the bound: a partial line would give a truncated value
        }
        const std::size_t end = lf == std::string_view::npos ? window.size() : lf;
        std::string_view line = window.substr(pos, end - pos);
        pos = lf == std::string_view::npos ? window.size() : lf + 1;
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1);
        }
        if (line.empty()) {
            break; // end of the header
        }
        if (is_blank(line.front())) {
            if (current_valid) {
                // Unfolding (RFC 5322 2.2.3) removes the line break, keeping the blank.
                auto& value = fields.back().value;
                const std::string_view more = ascii::trim(line, ascii::kBlanksCr);
                if (!more.empty()) {
                    if (!value.empty()) {
                        value.push_back(' ');
                    }
                    value.append(more);
                }
            }
            continue;
        }
        const std::size_t colon = line.find(':');
        current_valid = false;
        if (colon == std::string_view::npos) {
            continue;
        }
        const std::string_view name = ascii::trim(line.substr(0, colon), ascii::kBlanksCr);
        if (!valid_name(name)) {
            continue;
        }
        fields.push_back(HeaderField{
            std::string(name), std::string(ascii::trim(line.substr(colon + 1), ascii::kBlanksCr))});
        current_valid = true;
    }
    return fields;
}

} // namespace spoold::policy
