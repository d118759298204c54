#include "daemon/http/status.hpp"

#include <cmath>
#include <fmt/format.h>

#include "common/json.hpp"

namespace spoold::http {
namespace {

void append_u64(std::string& out, std::uint64_t v) {
    fmt::format_to(std::back_inserter(out), "{}", v);
}

void append_key(std::string& out, std::string_view key) {
    append_json_string(out, key);
    out += ':';
}

} // namespace

void append_json_string(std::string& out, std::string_view s) { json::append_string(out, s, true); }

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
    out += "],\"fleet\":";
    out += st.fleet_json.empty() ? "null" : st.fleet_json;
    out += '}';
    return out;
}

} // namespace spoold::http
