#include "tools/spoolctl/mbox.hpp"

#include <cctype>
#include <cstdlib>
#include <sys/types.h>

#include "common/address.hpp"
#include "common/date.hpp"
#include "common/text.hpp"
#include "tools/spoolctl/units.hpp"

namespace spoold::spoolctl {
namespace {

constexpr std::string_view kFromPrefix = "From ";
constexpr std::string_view kNullSenderName = "MAILER-DAEMON";

bool iequals_prefix(std::string_view line, std::string_view name) {
    return line.size() > name.size() && line[name.size()] == ':' &&
           address::iequals(line.substr(0, name.size()), name);
}

// Blanks before a header value; blanks and the line end after it.
std::string_view trim(std::string_view s) {
    return ascii::trim_right(ascii::trim_left(s), " \t\r\n");
}

std::string_view strip_angles(std::string_view s) {
    if (s.size() >= 2 && s.front() == '<' && s.back() == '>') {
        s.remove_prefix(1);
        s.remove_suffix(1);
    }
    return s;
}

// True for a line of the form ">*From " (zero or more '>' then "From ").
bool is_quotable_from(std::string_view line) {
    std::size_t i = 0;
    while (i < line.size() && line[i] == '>') {
        ++i;
    }
    return line.substr(i).starts_with(kFromPrefix);
}

} // namespace

std::string envelope_block(const FileEnvelope& envelope) {
    std::string out;
    if (envelope.mail_from) {
        out.append(kEnvelopeFromHeader).append(": <").append(*envelope.mail_from).append(">\r\n");
    }
    for (const auto& rcpt : envelope.recipients) {
        out.append(kEnvelopeToHeader).append(": <").append(rcpt).append(">\r\n");
    }
    if (!envelope.klass.empty()) {
        out.append(kEnvelopeClassHeader).append(": ").append(envelope.klass).append("\r\n");
    }
    return out;
}

FileEnvelope take_envelope_block(std::string& message) {
    FileEnvelope env;
    std::size_t pos = 0;
    while (pos < message.size()) {
        const std::size_t eol = message.find('\n', pos);
        const std::size_t end = eol == std::string::npos ? message.size() : eol + 1;
        const std::string_view line(message.data() + pos, end - pos);
        if (iequals_prefix(line, kEnvelopeFromHeader)) {
            env.mail_from =
                std::string(strip_angles(trim(line.substr(kEnvelopeFromHeader.size() + 1))));
        } else if (iequals_prefix(line, kEnvelopeToHeader)) {
            env.recipients.emplace_back(
                strip_angles(trim(line.substr(kEnvelopeToHeader.size() + 1))));
        } else if (iequals_prefix(line, kEnvelopeClassHeader)) {
            env.klass = std::string(trim(line.substr(kEnvelopeClassHeader.size() + 1)));
        } else {
            break;
        }
        pos = end;
    }
    message.erase(0, pos);
    return env;
}

bool plausible_address(std::string_view a) {
    const auto at = a.rfind('@');
    return at != std::string_view::npos && at > 0 && at + 1 < a.size() &&
           a.find_first_of(" \t\r\n<>,") == std::string_view::npos;
}

std::string to_crlf(std::string_view text) {
    std::string out;
    out.reserve(text.size() + text.size() / 32);
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) {
            out += '\r';
        }
        out += text[i];
    }
    return out;
}

std::string_view content_problem(std::string_view wire) {
    for (std::size_t i = 0; i < wire.size(); ++i) {
        if (wire[i] == '\r' && (i + 1 == wire.size() || wire[i + 1] != '\n')) {
            return "bare CR in message content (RFC 5321 2.3.8; spoold's SMTP listener "
                   "refuses it with 554 5.6.0)";
        }
        if (wire[i] == '\0') {
            return "NUL byte in message content (RFC 5321 2.3.8; spoold's SMTP listener "
                   "refuses it with 554 5.6.0)";
        }
    }
    return {};
}

std::string_view header_section(std::string_view message) {
    std::size_t pos = 0;
    while (pos < message.size()) {
        if (message[pos] == '\n') {
            return message.substr(0, pos); // an empty line right at the start: no headers
        }
        if (message.compare(pos, 2, "\r\n") == 0) {
            return message.substr(0, pos);
        }
        const std::size_t eol = message.find('\n', pos);
        if (eol == std::string_view::npos) {
            return message;
        }
        pos = eol + 1;
    }
    return message;
}

std::string mbox_from_line(std::string_view sender, UnixMillis arrival_ms) {
    std::string who;
    if (sender.empty()) {
        who = kNullSenderName;
    } else {
        // A From_ line is split on spaces by every reader: keep the sender one token.
        for (const char c : sender) {
            const auto u = static_cast<unsigned char>(c);
            who += (std::isspace(u) != 0 || std::iscntrl(u) != 0) ? '_' : c;
        }
    }
    return std::string(kFromPrefix) + who + " " + date::asctime(arrival_ms) + "\n";
}

void append_mboxrd(std::string& out, std::string_view from_line, std::string_view message) {
    out.append(from_line);
    std::size_t pos = 0;
    while (pos < message.size()) {
        std::size_t eol = message.find('\n', pos);
        const bool last = eol == std::string_view::npos;
        std::size_t line_end = last ? message.size() : eol;
        const std::size_t next = last ? message.size() : eol + 1;
        if (!last && line_end > pos && message[line_end - 1] == '\r') {
            --line_end;
        }
        const std::string_view line = message.substr(pos, line_end - pos);
        if (is_quotable_from(line)) {
            out += '>';
        }
        out.append(line);
        out += '\n';
        pos = next;
    }
    out += '\n';
}

bool MboxReader::read_line(std::string& line) {
    // getline(3) rather than fgets: a NUL byte inside a line must not cut it short.
    char* buf = nullptr;
    std::size_t cap = 0;
    const ssize_t n = ::getline(&buf, &cap, file_);
    if (n <= 0) {
        std::free(buf); // NOLINT: getline allocates with malloc
        line.clear();
        return false;
    }
    line.assign(buf, static_cast<std::size_t>(n));
    std::free(buf); // NOLINT
    ++line_number_;
    if (line.back() == '\n') {
        line.pop_back();
        if (!line.empty() && line.back() == '\r') {
            line.pop_back();
        }
    }
    return true;
}

std::optional<MboxMessage> MboxReader::next() {
    std::string line;
    if (!pending_from_) {
        if (started_) {
            return std::nullopt;
        }
        // Blank lines before the first From_ line are tolerated; anything else is not an mbox.
        while (read_line(line)) {
            if (line.starts_with(kFromPrefix)) {
                pending_from_ = line;
                break;
            }
            if (!trim(line).empty()) {
                bad_format_ = true;
                return std::nullopt;
            }
        }
        started_ = true;
        if (!pending_from_) {
            return std::nullopt;
        }
    }
    MboxMessage msg;
    const std::string_view from(*pending_from_);
    const std::string_view rest = from.substr(kFromPrefix.size());
    msg.sender = std::string(rest.substr(0, rest.find(' ')));
    pending_from_.reset();
    bool previous_blank = false;
    while (read_line(line)) {
        if (line.starts_with(kFromPrefix)) {
            pending_from_ = line;
            break;
        }
        if (previous_blank) {
            msg.message += "\r\n";
        }
        previous_blank = line.empty();
        if (previous_blank) {
            continue; // held back: the empty line before a From_ line is the separator
        }
        if (is_quotable_from(line) && line[0] == '>') {
            line.erase(0, 1);
        }
        msg.message += line;
        msg.message += "\r\n";
    }
    return msg;
}

std::vector<MboxMessage> parse_mbox(std::string_view text) {
    std::vector<MboxMessage> out;
    if (text.empty()) {
        return out;
    }
    std::FILE* f = fmemopen(const_cast<char*>(text.data()), text.size(), "r"); // NOLINT: read only
    if (f == nullptr) {
        return out;
    }
    MboxReader reader(f);
    while (auto m = reader.next()) {
        out.push_back(std::move(*m));
    }
    std::fclose(f);
    return out;
}

} // namespace spoold::spoolctl
