// Message files for spoolctl export/import: RFC 4155 mboxrd (From_ lines, ">From "
// quoting that round-trips), the X-Spoold-Envelope block that carries the envelope in a
// .eml or mbox message, and line-ending conversion. No file system or spool access here.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.hpp"

namespace spoold::spoolctl {

// The envelope written in front of a message by `export --with-envelope`, and read back by
// `import`. Only a block of these lines at the very top of the file counts: a message
// received from the Internet cannot forge its own recipients, because our Received: line
// always precedes anything the sender wrote.
inline constexpr std::string_view kEnvelopeFromHeader = "X-Spoold-Envelope-From";
inline constexpr std::string_view kEnvelopeToHeader = "X-Spoold-Envelope-To";
inline constexpr std::string_view kEnvelopeClassHeader = "X-Spoold-Class";

struct FileEnvelope {
    std::optional<std::string> mail_from; // "" is the null sender
    std::vector<std::string> recipients;
    std::string klass; // class name or number as exported; empty = not given
};

// "X-Spoold-Envelope-From: <a@b>\r\n" ... with CRLF line ends.
std::string envelope_block(const FileEnvelope& envelope);
// Removes the envelope block from the top of `message` and returns what it said.
// Lines are recognised with CRLF or LF ends. A message without the block is unchanged.
FileEnvelope take_envelope_block(std::string& message);

// An address as import takes it from --to, --from or the envelope block: "local@domain",
// one token (no blanks, line breaks, angle brackets or commas). Not a full RFC 5321 check.
bool plausible_address(std::string_view a);

// Every bare LF becomes CRLF (existing CRLF pairs are kept): the spool stores wire form.
std::string to_crlf(std::string_view text);
// Why import refuses a message (after to_crlf) that spoold's SMTP listener would have
// refused with 554 5.6.0 (RFC 5321 2.3.8): a bare CR (not followed by LF) or a NUL byte.
// Empty when there is nothing to refuse. A bare CR cannot be mended as a bare LF is: it may
// be a line end (old Mac text) or content, and either guess could change the message.
std::string_view content_problem(std::string_view wire);

// The header section of a message: everything before the first empty line (CRLF or LF).
std::string_view header_section(std::string_view message);

// "From sender Sun Nov 22 20:10:00 2026\n"; the null sender is written MAILER-DAEMON
// (as Postfix and procmail do); a sender with spaces or controls is quoted out.
std::string mbox_from_line(std::string_view sender, UnixMillis arrival_ms);
// Appends one mboxrd message: the From_ line, the message with LF line ends and every
// line matching ^>*From_ given one more '>', a final newline and an empty line.
void append_mboxrd(std::string& out, std::string_view from_line, std::string_view message);

// One message read back from an mbox: the From_ line sender and the message, with
// mboxrd quoting removed and CRLF line ends.
struct MboxMessage {
    std::string sender; // as written on the From_ line ("MAILER-DAEMON" for the null sender)
    std::string message;
};

// Reads an mbox one message at a time, so memory holds one message, not the file.
class MboxReader {
public:
    explicit MboxReader(std::FILE* file) : file_(file) {}
    // nullopt at end of file. Text before the first From_ line is an error (not an mbox).
    std::optional<MboxMessage> next();
    bool bad_format() const { return bad_format_; }
    std::uint64_t line_number() const { return line_number_; }

private:
    bool read_line(std::string& line);

    std::FILE* file_;
    std::optional<std::string> pending_from_;
    bool started_ = false;
    bool bad_format_ = false;
    std::uint64_t line_number_ = 0;
};

// Parses the whole of an mbox held in memory (tests and small files).
std::vector<MboxMessage> parse_mbox(std::string_view text);

} // namespace spoold::spoolctl
