// Parses the replies an SMTP or LMTP server sends (RFC 5321 4.2, RFC 2034 enhanced
// codes) from a byte stream fed in arbitrary pieces; also a milter's custom reply. No
// I/O, no protocol state: which reply answers which command is the client's job.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "common/reply.hpp"
#include "common/result.hpp"

namespace spoold {

// RFC 5321 4.5.3.1.5 allows 512 octets per reply line; real servers stay far below.
// The bound is generous so long EHLO banners pass, and it keeps a garbage-spewing
// peer from growing our buffer.
inline constexpr std::size_t kMaxReplyLineBytes = 2048;
// A multi-line reply with more lines than this is garbage (an EHLO lists ~20).
inline constexpr std::size_t kMaxReplyLines = 256;

class ReplyParser {
public:
    void feed(std::string_view bytes);
    // The next complete reply; an empty optional when more bytes are needed.
    // kProtocol for a malformed line (no 3-digit code, code out of 2xx-5xx, mixed codes
    // in one multi-line reply, a line over kMaxReplyLineBytes, too many lines). After
    // an error the parser stays failed: the connection must be closed.
    Result<std::optional<Reply>> next();
    // Bytes received but not yet parsed (a reply the server sent before we asked is a
    // protocol error in non-pipelined steps such as STARTTLS).
    bool has_buffered() const { return !buffer_.empty(); }
    void reset();

private:
    std::string buffer_;
    std::size_t scan_from_ = 0;
    Reply partial_;
    bool in_reply_ = false;
    std::optional<Error> failed_;
};

// Parses one complete reply (all its lines, CRLF-terminated) or fails; for tests
// and for callers that already hold the text.
Result<Reply> parse_reply(std::string_view text);

} // namespace spoold
