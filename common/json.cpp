#include "common/json.hpp"

#include <cmath>
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

std::string quoted(std::string_view text, bool script_safe) {
    std::string out;
    append_string(out, text, script_safe);
    return out;
}

void Writer::separate() {
    if (after_key_) {
        after_key_ = false;
        return;
    }
    if (need_comma_) {
        out_ += ',';
    }
}

Writer& Writer::begin_object() {
    separate();
    out_ += '{';
    need_comma_ = false;
    return *this;
}

Writer& Writer::end_object() {
    out_ += '}';
    need_comma_ = true;
    return *this;
}

Writer& Writer::begin_array() {
    separate();
    out_ += '[';
    need_comma_ = false;
    return *this;
}

Writer& Writer::end_array() {
    out_ += ']';
    need_comma_ = true;
    return *this;
}

Writer& Writer::key(std::string_view name) {
    separate();
    append_string(out_, name, script_safe_);
    out_ += ':';
    after_key_ = true;
    return *this;
}

Writer& Writer::value(std::string_view text) {
    separate();
    append_string(out_, text, script_safe_);
    need_comma_ = true;
    return *this;
}

Writer& Writer::value(std::int64_t number) {
    separate();
    fmt::format_to(std::back_inserter(out_), "{}", number);
    need_comma_ = true;
    return *this;
}

Writer& Writer::value(std::uint64_t number) {
    separate();
    fmt::format_to(std::back_inserter(out_), "{}", number);
    need_comma_ = true;
    return *this;
}

Writer& Writer::value(double number) {
    separate();
    // JSON has no NaN or infinity: a rate that is not a number is written as null.
    if (std::isfinite(number)) {
        fmt::format_to(std::back_inserter(out_), "{}", number);
    } else {
        out_ += "null";
    }
    need_comma_ = true;
    return *this;
}

Writer& Writer::value(bool flag) {
    separate();
    out_ += flag ? "true" : "false";
    need_comma_ = true;
    return *this;
}

Writer& Writer::null() {
    separate();
    out_ += "null";
    need_comma_ = true;
    return *this;
}

Writer& Writer::raw(std::string_view json) {
    separate();
    out_ += json;
    need_comma_ = true;
    return *this;
}

} // namespace spoold::json
