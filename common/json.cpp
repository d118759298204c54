#include "common/json.hpp"

#include <fmt/format.h>
#include <iterator>

#include "common/utf8.hpp"

namespace spoold::json {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD"; // U+FFFD in UTF-8

} // namespace

void append_string(std::string& out, std::string_view text, bool script_safe) {
    out.reserve(out.size() + text.size() + 2);
    out += '"';
    std::size_t i = 0;
    while (i < text.size()) {
        const char c = text[i];
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x80U) {
            const std::size_t len = utf8::sequence_length(text, i);
            if (len == 0) {
                out += kReplacement;
                ++i;
            } else {
                out.append(text.substr(i, len));
                i += len;
            }
            continue;
        }
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (u < 0x20U || u == 0x7FU) {
                fmt::format_to(std::back_inserter(out), "\\u{:04x}", u);
            } else if (c == '<' && script_safe) {
                out += "\\u003c";
            } else {
                out += c;
            }
        }
        ++i;
    }
    out += '"';
}

} // namespace spoold::json
