#include "tools/spoolctl/render.hpp"

#include <algorithm>
#include <charconv>
#include <fmt/format.h>

#include "common/date.hpp"
#include "common/json.hpp"
#include "tools/spoolctl/units.hpp"

namespace spoold::spoolctl {
namespace {

constexpr std::size_t kSenderWidth = 32;
constexpr std::size_t kRecipientWidth = 36;
constexpr std::size_t kResponseWidth = 48;

// spoolctl's own names for states: they are part of its output contract (scripts match
// on them), so they are spelled here rather than borrowed from the spool's log strings.
std::string_view msg_state_name(spool::MsgState s) {
    switch (s) {
    case spool::MsgState::kReady: return "ready";
    case spool::MsgState::kDeferred: return "deferred";
    case spool::MsgState::kHeld: return "held";
    }
    return "unknown";
}

std::string_view rcpt_state_name(spool::RcptState s) {
    switch (s) {
    case spool::RcptState::kQueued: return "queued";
    case spool::RcptState::kDeferred: return "deferred";
    case spool::RcptState::kDelivered: return "delivered";
    case spool::RcptState::kFailed: return "failed";
    case spool::RcptState::kExpired: return "expired";
    }
    return "unknown";
}

bool pending(const spool::Recipient& r) {
    return r.state == spool::RcptState::kQueued || r.state == spool::RcptState::kDeferred;
}

std::string fit(std::string text, std::size_t width) {
    if (text.size() > width) {
        text.resize(width - 2);
        text += "..";
    }
    return text;
}

std::string sender_text(const spool::Envelope& env) {
    return env.mail_from.empty() ? std::string("<>") : printable(env.mail_from);
}

// The reply that best explains why the message is still here: the first waiting recipient
// that has one, else any recipient's.
std::string last_response(const spool::Envelope& env) {
    for (const auto& r : env.recipients) {
        if (pending(r) && !r.last_response.empty()) {
            return r.last_response;
        }
    }
    for (const auto& r : env.recipients) {
        if (!r.last_response.empty()) {
            return r.last_response;
        }
    }
    return {};
}

std::size_t pending_count(const spool::Envelope& env) {
    return static_cast<std::size_t>(
        std::count_if(env.recipients.begin(), env.recipients.end(), pending));
}

// Summed here rather than with Counters' own totals so the formatting needs no spool code.
std::uint64_t
total(const std::array<std::array<std::uint64_t, spool::kNumMsgStates>, spool::kMaxClasses>& t) {
    std::uint64_t sum = 0;
    for (const auto& row : t) {
        for (const auto v : row) {
            sum += v;
        }
    }
    return sum;
}

} // namespace

ClassNames ClassNames::from_csv(std::string_view csv) {
    std::vector<std::string> names;
    while (!csv.empty()) {
        const auto comma = csv.find(',');
        std::string_view item = csv.substr(0, comma);
        while (!item.empty() && item.front() == ' ') {
            item.remove_prefix(1);
        }
        while (!item.empty() && item.back() == ' ') {
            item.remove_suffix(1);
        }
        names.emplace_back(item);
        if (comma == std::string_view::npos) {
            break;
        }
        csv.remove_prefix(comma + 1);
    }
    return ClassNames(std::move(names));
}

std::string ClassNames::name(spool::ClassId id) const {
    if (id < names_.size() && !names_[id].empty()) {
        return names_[id];
    }
    return fmt::format("{}", id);
}

std::optional<spool::ClassId> ClassNames::find(std::string_view text) const {
    for (std::size_t i = 0; i < names_.size(); ++i) {
        if (names_[i] == text) {
            return static_cast<spool::ClassId>(i);
        }
    }
    unsigned value = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc{} && ptr == text.data() + text.size() && !text.empty() &&
        value < spool::kMaxClasses) {
        return static_cast<spool::ClassId>(value);
    }
    return std::nullopt;
}

std::string printable(std::string_view text) {
    std::string out(text);
    constexpr unsigned char kFirstPrintable = 0x20;
    constexpr unsigned char kDelete = 0x7F;
    for (char& c : out) {
        const auto u = static_cast<unsigned char>(c);
        if (u < kFirstPrintable || u == kDelete) {
            c = '?';
        }
    }
    return out;
}

std::string table_header() {
    return fmt::format("{:<13} {:>6} {:>6} {:<8} {:<{}} {:<{}} {:<8} {}\n", "QUEUE ID", "AGE",
                       "SIZE", "CLASS", "SENDER", kSenderWidth, "RECIPIENTS", kRecipientWidth,
                       "STATE", "LAST RESPONSE");
}

std::string table_row(const spool::Envelope& env, spool::MsgState state, UnixMillis now_ms,
                      const ClassNames& classes) {
    std::string rcpts;
    const std::size_t waiting = pending_count(env);
    const spool::Recipient* first = nullptr;
    for (const auto& r : env.recipients) {
        if (pending(r)) {
            first = &r;
            break;
        }
    }
    if (first == nullptr && !env.recipients.empty()) {
        first = &env.recipients.front();
    }
    if (first != nullptr) {
        rcpts = printable(first->address);
        if (env.recipients.size() > 1) {
            // "+N" counts the other recipients still waiting, the ones an operator cares about.
            const std::size_t others = waiting > 0 ? waiting - 1 : env.recipients.size() - 1;
            if (others > 0) {
                rcpts += fmt::format(" +{}", others);
            }
        }
    }
    // A quarantined message has no delivery response yet: its hold reason says why it waits.
    const std::string note =
        env.hold_reason.empty() ? last_response(env) : "quarantined: " + env.hold_reason;
    return fmt::format("{:<13} {:>6} {:>6} {:<8} {:<{}} {:<{}} {:<8} {}\n", env.id.text(),
                       format_age(now_ms - env.arrival_ms), format_size(env.size),
                       fit(classes.name(env.klass), 8), fit(sender_text(env), kSenderWidth),
                       kSenderWidth, fit(rcpts, kRecipientWidth), kRecipientWidth,
                       msg_state_name(state), fit(printable(note), kResponseWidth));
}

std::string json_message(const spool::Envelope& env, spool::MsgState state, UnixMillis now_ms,
                         const ClassNames& classes, std::optional<std::string_view> headers) {
    json::Writer w;
    w.begin_object();
    w.key("id").value(env.id.text());
    w.key("arrival").value(date::iso8601(env.arrival_ms));
    w.key("arrival_ms").value(static_cast<std::int64_t>(env.arrival_ms));
    w.key("age_s").value(static_cast<std::int64_t>((now_ms - env.arrival_ms) / 1000));
    w.key("size").value(static_cast<std::uint64_t>(env.size));
    w.key("class").value(classes.name(env.klass));
    w.key("class_id").value(static_cast<int>(env.klass));
    w.key("state").value(msg_state_name(state));
    w.key("held").value(env.held);
    if (!env.hold_reason.empty()) {
        w.key("hold_reason").value(env.hold_reason);
    }
    w.key("sender").value(env.mail_from);
    w.key("expires_ms").value(static_cast<std::int64_t>(env.expires_ms));
    w.key("client").value(env.client_addr);
    w.key("recipients").begin_array();
    for (const auto& r : env.recipients) {
        w.begin_object();
        w.key("address").value(r.address);
        w.key("state").value(rcpt_state_name(r.state));
        w.key("attempts").value(r.attempts);
        w.key("next_attempt_ms").value(static_cast<std::int64_t>(r.next_attempt_ms));
        w.key("last_response").value(r.last_response);
        w.end_object();
    }
    w.end_array();
    if (headers) {
        w.key("headers").value(*headers);
    }
    w.end_object();
    return w.str() + "\n";
}

std::string show_text(const spool::Envelope& env, spool::MsgState state, UnixMillis now_ms,
                      const ClassNames& classes) {
    std::string out;
    out += fmt::format("queue id:    {}\n", env.id.text());
    out += fmt::format("arrival:     {} ({} ago)\n", date::rfc5322(env.arrival_ms),
                       format_age(now_ms - env.arrival_ms));
    out += fmt::format("class:       {}\n", classes.name(env.klass));
    out += fmt::format("state:       {}{}\n", msg_state_name(state),
                       (env.flags & spool::kFlagExpiredHold) != 0 ? " (retention expired)" : "");
    if (!env.hold_reason.empty()) {
        out += fmt::format("quarantined: {}\n", printable(env.hold_reason));
    }
    out += fmt::format("size:        {} bytes\n", env.size);
    out += fmt::format("sender:      <{}>\n", printable(env.mail_from));
    if (!env.mail_params.empty()) {
        out += fmt::format("parameters:  {}\n", printable(env.mail_params));
    }
    out +=
        fmt::format("client:      {} helo={}\n", printable(env.client_addr), printable(env.helo));
    if (!env.tls.empty()) {
        out += fmt::format("tls:         {}\n", printable(env.tls));
    }
    if (env.expires_ms != 0) {
        out += fmt::format("expires:     {}\n", date::rfc5322(env.expires_ms));
    }
    if (!env.envid.empty() || !env.ret.empty()) {
        out += fmt::format("dsn:         envid={} ret={}\n", printable(env.envid), env.ret);
    }
    if ((env.flags & spool::kFlagDsn) != 0) {
        out += "flags:       delivery status notification\n";
    }
    out += fmt::format("recipients:  {}\n", env.recipients.size());
    for (const auto& r : env.recipients) {
        out += fmt::format("  <{}> {} attempts={}", printable(r.address), rcpt_state_name(r.state),
                           r.attempts);
        if (r.state == spool::RcptState::kDeferred && r.next_attempt_ms != 0) {
            out += fmt::format(" next={}", r.next_attempt_ms > now_ms
                                               ? "in " + format_age(r.next_attempt_ms - now_ms)
                                               : std::string("now"));
        }
        out += "\n";
        if (!r.last_response.empty()) {
            out += fmt::format("      last response: {}\n", printable(r.last_response));
        }
    }
    return out;
}

void parse_breaker_meta(std::string_view value, MailstoreStatus& into) {
    bool first = true;
    while (!value.empty()) {
        const auto space = value.find(' ');
        const std::string_view word = value.substr(0, space);
        value = space == std::string_view::npos ? std::string_view() : value.substr(space + 1);
        if (word.empty()) {
            continue;
        }
        const auto eq = word.find('=');
        if (first && eq == std::string_view::npos) {
            into.breaker = std::string(word);
        } else if (eq != std::string_view::npos) {
            const std::string_view key = word.substr(0, eq);
            const std::string_view number = word.substr(eq + 1);
            std::uint64_t v = 0;
            const auto [ptr, ec] = std::from_chars(number.data(), number.data() + number.size(), v);
            const bool whole = ec == std::errc{} && ptr == number.data() + number.size();
            if (whole && key == "limit") {
                into.limit = v;
            } else if (whole && key == "in_flight") {
                into.in_flight = v;
            }
        }
        first = false;
    }
}

std::string status_text(const StatusReport& report, const ClassNames& classes) {
    std::string out;
    const auto& c = report.counters;
    out += fmt::format("messages: {}  bytes: {}  drain: {}\n", total(c.messages),
                       format_size(total(c.bytes)), report.paused ? "PAUSED" : "running");
    if (report.oldest_arrival_ms) {
        out += fmt::format("oldest:   {} ({} old)\n",
                           report.oldest ? report.oldest->text() : std::string("-"),
                           format_age(report.now_ms - *report.oldest_arrival_ms));
    } else {
        out += "oldest:   -\n";
    }
    if (report.space) {
        const auto& s = *report.space;
        out +=
            fmt::format("space:    {} used of {} map, {} free on disk\n", format_size(s.used_bytes),
                        format_size(s.map_size), format_size(s.fs_free_bytes));
    }
    if (report.removed_pending) {
        out += fmt::format("sweep:    {} removed messages' recipient-index entries pending\n",
                           *report.removed_pending);
    }
    out += fmt::format("\n{:<10} {:>10} {:>8} {:>10} {:>8} {:>10} {:>8}\n", "CLASS", "READY",
                       "BYTES", "DEFERRED", "BYTES", "HELD", "BYTES");
    for (std::size_t k = 0; k < spool::kMaxClasses; ++k) {
        const auto& m = c.messages[k];
        const auto& b = c.bytes[k];
        const bool named = k < classes.names().size();
        if (!named && m[0] + m[1] + m[2] == 0) {
            continue; // unnamed classes with nothing in them are noise
        }
        out += fmt::format("{:<10} {:>10} {:>8} {:>10} {:>8} {:>10} {:>8}\n",
                           fit(classes.name(static_cast<spool::ClassId>(k)), 10), m[0],
                           format_size(b[0]), m[1], format_size(b[1]), m[2], format_size(b[2]));
    }
    if (!report.mailstores.empty()) {
        out += fmt::format("\n{:<16} {:<10} {:>6} {:>9} {:>8} {}\n", "MAILSTORE", "BREAKER",
                           "LIMIT", "IN-FLIGHT", "RATE/S", "DRAIN");
        const auto number = [](const std::optional<std::uint64_t>& v) {
            return v ? fmt::format("{}", *v) : std::string("-");
        };
        for (const auto& ms : report.mailstores) {
            out += fmt::format("{:<16} {:<10} {:>6} {:>9} {:>8} {}\n", fit(printable(ms.name), 16),
                               fit(printable(ms.breaker.value_or("-")), 10), number(ms.limit),
                               number(ms.in_flight), fit(printable(ms.rate.value_or("-")), 8),
                               ms.paused || report.paused ? "paused" : "running");
        }
    }
    return out;
}

std::string status_json(const StatusReport& report, const ClassNames& classes) {
    json::Writer w;
    const auto& c = report.counters;
    w.begin_object();
    w.key("messages").value(static_cast<std::uint64_t>(total(c.messages)));
    w.key("bytes").value(static_cast<std::uint64_t>(total(c.bytes)));
    w.key("paused").value(report.paused);
    if (report.oldest_arrival_ms) {
        w.key("oldest_id").value(report.oldest ? report.oldest->text() : std::string());
        w.key("oldest_age_s")
            .value(static_cast<std::int64_t>((report.now_ms - *report.oldest_arrival_ms) / 1000));
    } else {
        w.key("oldest_id").null();
        w.key("oldest_age_s").null();
    }
    if (report.space) {
        w.key("space").begin_object();
        w.key("map_size").value(static_cast<std::uint64_t>(report.space->map_size));
        w.key("used_bytes").value(static_cast<std::uint64_t>(report.space->used_bytes));
        w.key("fs_free_bytes").value(static_cast<std::uint64_t>(report.space->fs_free_bytes));
        w.end_object();
    }
    w.key("removed_pending");
    report.removed_pending ? w.value(static_cast<std::uint64_t>(*report.removed_pending))
                           : w.null();
    w.key("classes").begin_array();
    for (std::size_t k = 0; k < spool::kMaxClasses; ++k) {
        const auto& m = c.messages[k];
        const auto& b = c.bytes[k];
        if (k >= classes.names().size() && m[0] + m[1] + m[2] == 0) {
            continue;
        }
        w.begin_object();
        w.key("class").value(classes.name(static_cast<spool::ClassId>(k)));
        w.key("class_id").value(static_cast<int>(k));
        constexpr std::array<spool::MsgState, 3> kStates = {
            spool::MsgState::kReady, spool::MsgState::kDeferred, spool::MsgState::kHeld};
        for (const auto s : kStates) {
            const auto i = static_cast<std::size_t>(s);
            w.key(msg_state_name(s)).begin_object();
            w.key("messages").value(static_cast<std::uint64_t>(m[i]));
            w.key("bytes").value(static_cast<std::uint64_t>(b[i]));
            w.end_object();
        }
        w.end_object();
    }
    w.end_array();
    w.key("mailstores").begin_array();
    for (const auto& ms : report.mailstores) {
        w.begin_object();
        w.key("name").value(ms.name);
        w.key("breaker");
        ms.breaker ? w.value(*ms.breaker) : w.null();
        w.key("rate");
        ms.rate ? w.value(*ms.rate) : w.null();
        w.key("paused").value(ms.paused || report.paused);
        w.key("limit");
        ms.limit ? w.value(static_cast<std::uint64_t>(*ms.limit)) : w.null();
        w.key("in_flight");
        ms.in_flight ? w.value(static_cast<std::uint64_t>(*ms.in_flight)) : w.null();
        w.end_object();
    }
    w.end_array();
    w.end_object();
    return w.str() + "\n";
}

} // namespace spoold::spoolctl
