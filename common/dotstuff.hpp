// Client-side body encoding for SMTP/LMTP DATA: line ends normalised to CRLF, a '.'
// doubled at the start of every line, and the final "." line. Incremental, so a body
// streams through in pieces split anywhere. The server side (un-stuffing) is smtp/'s.
#pragma once

#include <string>
#include <string_view>

namespace spoold {

class DotStuffer {
public:
    // Appends the wire form of `in` to `out`. Bare LF and bare CR both become CRLF
    // (RFC 5321 2.3.8 forbids sending them bare; a CR LF split across two pieces is
    // still one line end).
    void feed(std::string_view in, std::string& out);
    // Ends the body: CRLF when the last line was not terminated, then ".\r\n".
    // The stuffer is reset and can encode the next body.
    void finish(std::string& out);
    void reset();

private:
    bool line_start_ = true;
    bool pending_cr_ = false;
};

// Line ends normalised to LF (CRLF and bare CR become LF), for stores that keep
// Unix line ends such as Maildir. Incremental like DotStuffer; no dot-stuffing.
class LfNormalizer {
public:
    void feed(std::string_view in, std::string& out);
    // Flushes a trailing CR held back to see whether an LF follows; then resets.
    void finish(std::string& out);

private:
    bool pending_cr_ = false;
};

} // namespace spoold
