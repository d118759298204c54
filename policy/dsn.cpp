#include "policy/dsn.hpp"

#include <algorithm>
#include <cctype>
#include <fmt/format.h>

#include "common/date.hpp"
#include "policy/text.hpp"

namespace spoold::policy {
namespace {

constexpr std::string_view kCrlf = "\r\n";
// Diagnostic text longer than this is cut: RFC 5322 lines stop at 998 octets.
constexpr std::size_t kMaxDiagnostic = 900;

// Values from the envelope or a peer go into header fields: no line breaks or controls.
std::string header_safe(std::string_view s, std::size_t max = kMaxDiagnostic) {
    std::string out;
    for (const char c : s.substr(0, max)) {
        const auto u = static_cast<unsigned char>(c);
        out.push_back(u < ' ' || u == 127 ? ' ' : c);
    }
    return out;
}

// Bare LF and bare CR become CRLF, as a message on the wire must have.
std::string to_crlf(std::string_view s) {
    std::string out;
    out.reserve(s.size() + s.size() / 32);
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '\r') {
            out += kCrlf;
            if (i + 1 < s.size() && s[i + 1] == '\n') {
                ++i;
            }
        } else if (c == '\n') {
            out += kCrlf;
        } else {
            out.push_back(c);
        }
    }
    if (!out.empty() && !out.ends_with(kCrlf)) {
        out += kCrlf;
    }
    return out;
}

// The header of a message: everything before the first empty line (CRLF or LF).
std::string_view header_of(std::string_view message) {
    std::size_t pos = 0;
    while (pos < message.size()) {
        const std::size_t lf = message.find('\n', pos);
        if (lf == std::string_view::npos) {
            return message;
        }
        const std::string_view line = message.substr(pos, lf - pos);
        if (line.empty() || line == "\r") {
            return message.substr(0, pos);
        }
        pos = lf + 1;
    }
    return message;
}

// "550 5.1.1 text" -> "5.1.1" when the class digit is `klass`; else "".
std::string status_from_reply(std::string_view reply, char klass) {
    const auto space = reply.find(' ');
    if (space == std::string_view::npos) {
        return {};
    }
    std::string_view code = reply.substr(space + 1);
    code = code.substr(0, code.find(' '));
    int dots = 0;
    bool ok = code.size() >= 5 && code.size() <= 9 && code[0] == klass && code[1] == '.';
    for (const char c : code) {
        dots += c == '.' ? 1 : 0;
        ok = ok && (c == '.' || std::isdigit(static_cast<unsigned char>(c)) != 0);
    }
    return ok && dots == 2 && code.back() != '.' && code.find("..") == std::string_view::npos
               ? std::string(code)
               : std::string();
}

bool is_success(DsnAction a) { return a == DsnAction::kDelivered || a == DsnAction::kRelayed; }

std::string status_of(const DsnRecipient& r) {
    if (!r.status.empty()) {
        return header_safe(r.status);
    }
    switch (r.action) {
    case DsnAction::kFailed: {
        auto s = status_from_reply(r.diagnostic, '5');
        return s.empty() ? "5.0.0" : s;
    }
    case DsnAction::kDelayed: {
        auto s = status_from_reply(r.diagnostic, '4');
        return s.empty() ? "4.0.0" : s;
    }
    case DsnAction::kExpired: return "4.4.7"; // RFC 3463: delivery time expired
    case DsnAction::kDelivered:
    case DsnAction::kRelayed: {
        auto s = status_from_reply(r.diagnostic, '2');
        return s.empty() ? "2.0.0" : s;
    }
    }
    return "5.0.0";
}

std::string_view action_field(DsnAction a) {
    switch (a) {
    case DsnAction::kFailed:
    case DsnAction::kExpired: return "failed";
    case DsnAction::kDelayed: return "delayed";
    case DsnAction::kDelivered: return "delivered";
    case DsnAction::kRelayed: return "relayed";
    }
    return "failed";
}

// The text part's line for one recipient: its last reply with what it means.
std::string why_text(const DsnRecipient& r) {
    const std::string reply = header_safe(r.diagnostic);
    switch (r.action) {
    case DsnAction::kExpired:
        return reply.empty() ? "not delivered within the retention period"
                             : "not delivered within the retention period; last reply: " + reply;
    case DsnAction::kDelivered:
        return reply.empty() ? "delivered to the mailbox" : "delivered to the mailbox: " + reply;
    case DsnAction::kRelayed:
        return "relayed to a mail server that sends no delivery reports" +
               (reply.empty() ? std::string() : ": " + reply);
    case DsnAction::kDelayed: return reply.empty() ? "delivery is being retried" : reply;
    case DsnAction::kFailed: break;
    }
    return reply.empty() ? "delivery failed" : reply;
}

std::string with_address_type(std::string_view value) {
    // ORCPT is "addr-type;xtext"; a bare address gets the only type we know.
    return value.find(';') == std::string_view::npos ? "rfc822;" + std::string(value)
                                                     : std::string(value);
}

std::string boundary_char_safe(std::string_view s) {
    std::string out;
    for (const char c : s) {
        out.push_back(
            std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' ? c : '_');
    }
    return out;
}

bool has_8bit(std::string_view s) {
    return std::any_of(s.begin(), s.end(),
                       [](char c) { return static_cast<unsigned char>(c) >= 128; });
}

} // namespace

bool unknown_recipient_reply(std::string_view reply) {
    return status_from_reply(reply, '5') == "5.1.1";
}

bool dsn_wanted(std::string_view envelope_sender, std::uint8_t notify, DsnAction action) {
    if (envelope_sender.empty() || envelope_sender == "<>") {
        return false;
    }
    if ((notify & kDsnNotifyNever) != 0) {
        return false;
    }
    if (is_success(action)) {
        return (notify & kDsnNotifySuccess) != 0; // never by default
    }
    if (notify == 0) {
        return true;
    }
    const std::uint8_t bit = action == DsnAction::kDelayed ? kDsnNotifyDelay : kDsnNotifyFailure;
    return (notify & bit) != 0;
}

std::string dsn_from_address(const Config& config) {
    const std::string& s = config.bounces.dsn_sender;
    return s.find('@') != std::string::npos ? s : s + "@" + config.hostname;
}

std::string build_dsn(const DsnInput& in) {
    const auto any = [&in](auto pred) {
        return std::any_of(in.recipients.begin(), in.recipients.end(),
                           [&pred](const DsnRecipient& r) { return pred(r.action); });
    };
    const bool any_failed =
        any([](DsnAction a) { return a == DsnAction::kFailed || a == DsnAction::kExpired; });
    const bool any_delayed = any([](DsnAction a) { return a == DsnAction::kDelayed; });
    const std::string host = header_safe(in.reporting_host);
    const std::string queue_id = header_safe(in.queue_id);

    // The returned original: the whole message only when asked for, for a failure, and not
    // too large (RFC 3461 4.3 lets the MTA return just the header).
    const bool full =
        any_failed && ascii_lower(in.ret) == "full" && in.original.size() <= in.max_full_bytes;
    const std::string returned =
        to_crlf(full ? in.original : header_of(in.original.substr(0, in.max_full_bytes)));

    // Human-readable part.
    std::string text;
    text += fmt::format("This is the mail system at host {}.\r\n\r\n", host);
    std::string_view subject;
    if (any_failed) {
        subject = "Undelivered Mail Returned to Sender";
        text += "Your message could not be delivered to one or more recipients below.\r\n";
    } else if (any_delayed) {
        subject = "Delayed Mail (still being retried)";
        text += "Your message has not been delivered yet to the recipients below.\r\n"
                "It is still queued and delivery will be retried; you do not need to\r\n"
                "send it again.\r\n";
    } else {
        subject = "Successful Mail Delivery Report";
        text += "Your message was successfully delivered to the recipients below,\r\n"
                "as you asked (NOTIFY=SUCCESS).\r\n";
    }
    text += fmt::format("\r\nQueue id {}, arrived {}.\r\n\r\n", queue_id.empty() ? "-" : queue_id,
                        date::rfc5322(in.arrival_ms));
    for (const auto& r : in.recipients) {
        text += fmt::format("<{}>: {}\r\n", header_safe(r.address), why_text(r));
    }
    text += full ? "\r\nYour message is attached.\r\n"
                 : "\r\nThe header of your message is attached.\r\n";

    // Machine-readable part (RFC 3464 2.2, 2.3).
    std::string status = fmt::format("Reporting-MTA: dns; {}\r\n", host);
    if (!in.envid.empty()) {
        status += fmt::format("Original-Envelope-Id: {}\r\n", header_safe(in.envid));
    }
    status += fmt::format("Arrival-Date: {}\r\n", date::rfc5322(in.arrival_ms));
    for (const auto& r : in.recipients) {
        status += kCrlf;
        if (!r.orcpt.empty()) {
            status +=
                fmt::format("Original-Recipient: {}\r\n", with_address_type(header_safe(r.orcpt)));
        }
        status += fmt::format("Final-Recipient: rfc822; {}\r\n", header_safe(r.address));
        status += fmt::format("Action: {}\r\n", action_field(r.action));
        status += fmt::format("Status: {}\r\n", status_of(r));
        if (!r.diagnostic.empty()) {
            status += fmt::format("Diagnostic-Code: smtp; {}\r\n", header_safe(r.diagnostic));
        }
        if (r.last_attempt_ms != 0) {
            status += fmt::format("Last-Attempt-Date: {}\r\n", date::rfc5322(r.last_attempt_ms));
        }
    }

    // A boundary that does not occur in any part (RFC 2046 5.1.1).
    std::string boundary =
        fmt::format("{}.{}/{}", boundary_char_safe(queue_id), in.now_ms, boundary_char_safe(host));
    for (int n = 1; returned.find("--" + boundary) != std::string::npos ||
                    text.find("--" + boundary) != std::string::npos ||
                    status.find("--" + boundary) != std::string::npos;
         ++n) {
        boundary = fmt::format("{}.{}.{}/{}", boundary_char_safe(queue_id), in.now_ms, n,
                               boundary_char_safe(host));
    }

    std::string out;
    out += fmt::format("From: Mail Delivery System <{}>\r\n", header_safe(in.from_address));
    out += fmt::format("To: <{}>\r\n", header_safe(in.envelope_sender));
    out += fmt::format("Subject: {}\r\n", subject);
    out += fmt::format("Date: {}\r\n", date::rfc5322(in.now_ms));
    out += fmt::format("Message-ID: <dsn.{}.{}@{}>\r\n", boundary_char_safe(queue_id), in.now_ms,
                       host);
    out += "Auto-Submitted: auto-replied\r\n";
    out += "MIME-Version: 1.0\r\n";
    out += fmt::format("Content-Type: multipart/report; report-type=delivery-status;\r\n"
                       "\tboundary=\"{}\"\r\n",
                       boundary);
    out += "\r\nThis is a MIME-encapsulated message.\r\n\r\n";
    out += fmt::format("--{}\r\n", boundary);
    out += "Content-Description: Notification\r\n";
    out += "Content-Type: text/plain; charset=us-ascii\r\n\r\n";
    out += text;
    out += fmt::format("\r\n--{}\r\n", boundary);
    out += "Content-Description: Delivery report\r\n";
    out += "Content-Type: message/delivery-status\r\n\r\n";
    out += status;
    out += fmt::format("\r\n--{}\r\n", boundary);
    if (full) {
        out += "Content-Description: Undelivered Message\r\nContent-Type: message/rfc822\r\n";
    } else {
        out += any_failed ? "Content-Description: Undelivered Message Headers\r\n"
                          : "Content-Description: Message Headers\r\n";
        out += "Content-Type: text/rfc822-headers\r\n";
    }
    if (has_8bit(returned)) {
        out += "Content-Transfer-Encoding: 8bit\r\n";
    }
    out += kCrlf;
    out += returned;
    out += fmt::format("\r\n--{}--\r\n", boundary);
    return out;
}

} // namespace spoold::policy
