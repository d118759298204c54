#include "daemon/http/status.hpp"

#include <cmath>
#include <fmt/format.h>

namespace spoold::http {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD"; // U+FFFD in UTF-8

// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not valid
// (overlong forms, surrogates and code points above U+10FFFF included).
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (b0 < 0x80) {
        return 1;
    } else if ((b0 & 0xE0) == 0xC0) {
        len = 2;
        cp = b0 & 0x1F;
    } else if ((b0 & 0xF0) == 0xE0) {
        len = 3;
        cp = b0 & 0x0F;
    } else if ((b0 & 0xF8) == 0xF0) {
        len = 4;
        cp = b0 & 0x07;
    } else {
        return 0;
    }
    if (i + len > s.size()) {
        return 0;
    }
    for (std::size_t k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(s[i + k]);
        if ((b & 0xC0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (b & 0x3F);
    }
    constexpr std::uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        return 0;
    }
    return len;
}

void append_u64(std::string& out, std::uint64_t v) { fmt::format_to(std::back_inserter(out), "{}", v); }

void append_key(std::string& out, std::string_view key) {
    append_json_string(out, key);
    out += ':';
}

} // namespace

void append_json_string(std::string& out, std::string_view s) {
    out += '"';
    std::size_t i = 0;
    while (i < s.size()) {
        const char c = s[i];
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x80) {
            const std::size_t len = utf8_sequence_length(s, i);
            if (len == 0) {
                out += kReplacement;
                ++i;
            } else {
                out.append(s.substr(i, len));
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
            if (u < 0x20 || u == 0x7F) {
                fmt::format_to(std::back_inserter(out), "\\u{:04x}", u);
            } else if (c == '<') {
                // So the document is safe to inline in a <script> block as well.
                out += "\\u003c";
            } else {
                out += c;
            }
        }
        ++i;
    }
    out += '"';
}

void append_json_number(std::string& out, double v) {
    if (!std::isfinite(v)) {
        out += "null";
        return;
    }
    fmt::format_to(std::back_inserter(out), "{}", v);
}

std::string status_json(const StatusSnapshot& st) {
    std::string out;
    out.reserve(1024 + st.history.size() * (64 + 24 * st.classes.size()));
    std::uint64_t total = 0;
    std::uint64_t backlog = 0;
    std::uint64_t bytes = 0;
    for (const auto& c : st.classes) {
        total += c.ready + c.deferred + c.held;
        backlog += c.ready + c.deferred; // held mail does not drain until released
        bytes += c.bytes;
    }

    out += '{';
    append_key(out, "version");
    append_json_string(out, st.version);
    out += ',';
    append_key(out, "now_ms");
    fmt::format_to(std::back_inserter(out), "{}", st.now_ms);
    out += ',';
    append_key(out, "uptime_s");
    append_json_number(out, st.uptime_s);
    out += ',';
    append_key(out, "paused");
    out += st.paused ? "true" : "false";
    out += ',';

    append_key(out, "classes");
    out += '[';
    for (std::size_t i = 0; i < st.classes.size(); ++i) {
        const auto& c = st.classes[i];
        out += i > 0 ? ",{" : "{";
        append_key(out, "name");
        append_json_string(out, c.name);
        out += ",\"ready\":";
        append_u64(out, c.ready);
        out += ",\"deferred\":";
        append_u64(out, c.deferred);
        out += ",\"held\":";
        append_u64(out, c.held);
        out += ",\"bytes\":";
        append_u64(out, c.bytes);
        out += '}';
    }
    out += "],\"total_messages\":";
    append_u64(out, total);
    out += ",\"backlog\":";
    append_u64(out, backlog);
    out += ",\"total_bytes\":";
    append_u64(out, bytes);
    out += ",\"oldest_age_s\":";
    append_json_number(out, st.oldest_age_s);

    out += ",\"mailstores\":[";
    for (std::size_t i = 0; i < st.mailstores.size(); ++i) {
        const auto& m = st.mailstores[i];
        out += i > 0 ? ",{" : "{";
        append_key(out, "name");
        append_json_string(out, m.name);
        out += ",\"breaker\":";
        append_json_string(out, metrics::to_string(m.breaker));
        out += ",\"breaker_level\":";
        append_u64(out, static_cast<std::uint64_t>(m.breaker));
        out += ",\"concurrency_limit\":";
        append_u64(out, m.concurrency_limit);
        out += ",\"in_flight\":";
        append_u64(out, m.in_flight);
        out += ",\"rate\":";
        append_json_number(out, m.rate);
        out += '}';
    }
    out += "],\"ingest_rate\":";
    append_json_number(out, st.ingest_rate);
    out += ",\"drain_rate\":";
    append_json_number(out, st.drain_rate);
    out += ",\"drain_eta_s\":";
    if (st.drain_rate > 0 && std::isfinite(st.drain_rate)) {
        append_json_number(out, static_cast<double>(backlog) / st.drain_rate);
    } else {
        out += "null";
    }

    out += ",\"history\":[";
    for (std::size_t i = 0; i < st.history.size(); ++i) {
        const auto& h = st.history[i];
        out += i > 0 ? ",{" : "{";
        out += "\"t\":";
        fmt::format_to(std::back_inserter(out), "{}", h.t_ms);
        out += ",\"backlog\":{";
        for (std::size_t k = 0; k < h.backlog.size(); ++k) {
            if (k > 0) {
                out += ',';
            }
            append_key(out, h.backlog[k].first);
            append_u64(out, h.backlog[k].second);
        }
        out += "},\"ingest\":";
        append_json_number(out, h.ingest_rate);
        out += ",\"drain\":";
        append_json_number(out, h.drain_rate);
        out += ",\"breaker\":";
        append_u64(out, static_cast<std::uint64_t>(h.breaker));
        out += '}';
    }
    out += "]}";
    return out;
}

} // namespace spoold::http
