#include "smtp/received_header.hpp"

#include <fmt/format.h>

#include "common/date.hpp"

namespace spoold::smtp {

std::string sanitize_for_header(std::string_view text, bool allow_space) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        const auto u = static_cast<unsigned char>(c);
        const bool ok =
            (u > 0x20 && u < 0x7f && c != '(' && c != ')' && c != '\\' && c != '"' && c != ';') ||
            u >= 0x80 || (allow_space && c == ' ');
        out += ok ? c : '_';
    }
    return out;
}

std::string received_header(const ReceivedFields& f) {
    const bool tls = f.tls.has_value();
    std::string proto;
    if (f.smtputf8) {
        proto = tls ? "UTF8SMTPS" : "UTF8SMTP";
    } else if (f.esmtp) {
        proto = tls ? "ESMTPS" : "ESMTP";
    } else {
        proto = "SMTP";
    }
    const std::string& client = f.client_addr;
    const std::string literal = client.find(':') != std::string::npos ? "IPv6:" + client : client;
    std::string h =
        fmt::format("Received: from {} ([{}])\r\n", sanitize_for_header(f.helo, false), literal);
    if (tls) {
        h += fmt::format("\t(using {})\r\n", sanitize_for_header(*f.tls, true));
    }
    h += fmt::format("\tby {} (spoold) with {} id {}", f.hostname, proto, f.queue_id);
    if (f.only_recipient) {
        // Only one recipient is named: listing several would disclose Bcc recipients.
        h += fmt::format("\r\n\tfor <{}>", *f.only_recipient);
    }
    h += fmt::format(";\r\n\t{}\r\n", date::rfc5322(f.now_ms));
    return h;
}

} // namespace spoold::smtp
