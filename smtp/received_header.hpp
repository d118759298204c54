// The Received: trace header (RFC 5321 4.4) the session puts on top of every message: the
// text it is built from goes in, the header comes out. Pure: no clock, no session state.
#pragma once

#include <optional>
#include <string>

#include "common/clock.hpp"

namespace spoold::smtp {

struct ReceivedFields {
    std::string helo;        // the client's HELO/EHLO name, as it gave it
    std::string client_addr; // textual IP address ("192.0.2.1", "2001:db8::1")
    std::string hostname;    // ours
    std::string queue_id;
    bool esmtp = false;             // EHLO (not HELO)
    bool smtputf8 = false;          // MAIL FROM had SMTPUTF8
    std::optional<std::string> tls; // TlsInfo::describe() when the connection is encrypted
    std::optional<std::string> only_recipient; // named only when there is exactly one
    UnixMillis now_ms = 0;
};

// The whole field, folded, ending in CRLF: from HELO name and address literal, (using TLS),
// by us with RFC 3848's protocol name (ESMTPS, UTF8SMTP, ...) and the queue id, for the
// one recipient, and the date. The client's text cannot break its structure.
std::string received_header(const ReceivedFields& f);

// Text from the client (HELO) or the TLS library as it goes into the header: readable,
// with no parentheses, quotes, backslashes or semicolons, and spaces only where the text is
// a comment (allow_space); every other byte below 0x80 that is not printable becomes '_'.
std::string sanitize_for_header(std::string_view text, bool allow_space);

} // namespace spoold::smtp
