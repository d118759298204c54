// SMTP/LMTP reply lines: the value type, formatting (multi-line), and the one
// table that maps an ErrorKind to an honest reply (local trouble is always 4xx).
// Parsing replies read from a peer: common/reply_parser.hpp.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace spoold {

struct Reply {
    int code = 0;                   // 250, 452, ...
    std::string enhanced;           // "2.0.0"; empty where RFC 3463 codes do not apply (greeting)
    std::vector<std::string> lines; // text of each line, without code

    bool positive() const { return code >= 200 && code < 400; }
    bool transient() const { return code >= 400 && code < 500; }
    bool permanent() const { return code >= 500; }

    // Wire form, CRLF-terminated, "250-" on every line but the last.
    std::string wire() const;
    // One line for logs: "452 4.3.1 text".
    std::string summary() const;
};

Reply make_reply(int code, std::string_view enhanced, std::string_view text);

// The reply to give a client when a local operation failed with `error`.
// kSpoolFull/kDiskFull -> 452 4.3.1; kTimeout/kUnavailable/kIo/... -> 451 4.3.0.
// Never a 5xx: local trouble must make the sender retry.
Reply reply_for_local_error(const Error& error);

} // namespace spoold
