#include "tools/spoolctl/json.hpp"

#include <cmath>
#include <fmt/format.h>

namespace spoold::spoolctl {
namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 when it is not one.
std::size_t utf8_length(std::string_view s, std::size_t i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t min = 0;
    std::uint32_t cp = 0;
    if (b0 < 0x80U) {
        return 1;
    }
    if ((b0 & 0xE0U) == 0xC0U) {
        len = 2, min = 0x80U, cp = b0 & 0x1FU;
    } else if ((b0 & 0xF0U) == 0xE0U) {
        len = 3, min = 0x800U, cp = b0 & 0x0FU;
    } else if ((b0 & 0xF8U) == 0xF0U) {
        len = 4, min = 0x10000U, cp = b0 & 0x07U;
    } else {
        return 0;
    }
    if (i + len > s.size()) {
        return 0;
    }
    for (std::size_t k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        if ((b & 0xC0U) != 0x80U) {
            return 0;
        }
        cp = (cp << 6U) | (b & 0x3FU);
    }
    constexpr std::uint32_t kMaxCodePoint = 0x10FFFF;
    constexpr std::uint32_t kSurrogateLow = 0xD800;
    constexpr std::uint32_t kSurrogateHigh = 0xDFFF;
    if (cp < min || cp > kMaxCodePoint || (cp >= kSurrogateLow && cp <= kSurrogateHigh)) {
        return 0;
    }
    return len;
}

} // namespace

std::string json_string(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 2);
    out += '"';
    for (std::size_t i = 0; i < text.size();) {
        const char c = text[i];
        const auto u = static_cast<unsigned char>(c);
        switch (c) {
        case '"':
            out += "\\\"";
            ++i;
            continue;
        case '\\':
            out += "\\\\";
            ++i;
            continue;
        case '\n':
            out += "\\n";
            ++i;
            continue;
        case '\r':
            out += "\\r";
            ++i;
            continue;
        case '\t':
            out += "\\t";
            ++i;
            continue;
        default:
            break;
        }
        constexpr unsigned char kFirstPrintable = 0x20;
        if (u < kFirstPrintable || u == 0x7FU) {
            out += fmt::format("\\u{:04x}", u);
            ++i;
            continue;
        }
        const std::size_t len = utf8_length(text, i);
        if (len == 0) {
            out += "\xEF\xBF\xBD"; // U+FFFD for a byte that is not UTF-8
            ++i;
            continue;
        }
        out.append(text.substr(i, len));
        i += len;
    }
    out += '"';
    return out;
}

void JsonWriter::separate() {
    if (after_key_) {
        after_key_ = false;
        return;
    }
    if (need_comma_) {
        out_ += ',';
    }
}

JsonWriter &JsonWriter::begin_object() {
    separate();
    out_ += '{';
    need_comma_ = false;
    return *this;
}

JsonWriter &JsonWriter::end_object() {
    out_ += '}';
    need_comma_ = true;
    return *this;
}

JsonWriter &JsonWriter::begin_array() {
    separate();
    out_ += '[';
    need_comma_ = false;
    return *this;
}

JsonWriter &JsonWriter::end_array() {
    out_ += ']';
    need_comma_ = true;
    return *this;
}

JsonWriter &JsonWriter::key(std::string_view name) {
    separate();
    out_ += json_string(name);
    out_ += ':';
    after_key_ = true;
    return *this;
}

JsonWriter &JsonWriter::value(std::string_view text) {
    separate();
    out_ += json_string(text);
    need_comma_ = true;
    return *this;
}

JsonWriter &JsonWriter::value(std::int64_t number) {
    separate();
    out_ += fmt::format("{}", number);
    need_comma_ = true;
    return *this;
}

JsonWriter &JsonWriter::value(std::uint64_t number) {
    separate();
    out_ += fmt::format("{}", number);
    need_comma_ = true;
    return *this;
}

JsonWriter &JsonWriter::value(double number) {
    separate();
    // JSON has no NaN or infinity: a rate that is not a number is written as null.
    out_ += std::isfinite(number) ? fmt::format("{}", number) : std::string("null");
    need_comma_ = true;
    return *this;
}

JsonWriter &JsonWriter::value(bool flag) {
    separate();
    out_ += flag ? "true" : "false";
    need_comma_ = true;
    return *this;
}

JsonWriter &JsonWriter::null() {
    separate();
    out_ += "null";
    need_comma_ = true;
    return *this;
}

} // namespace spoold::spoolctl
