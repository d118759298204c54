#include "common/reply_parser.hpp"

#include <fmt/format.h>

namespace spoold {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// An RFC 3463 status code "c.sss.ddd" at the start of `text`, matching the reply
// class; returns its length (0 when there is none).
std::size_t enhanced_length(std::string_view text, int code) {
    if (text.size() < 5 || text[0] != static_cast<char>('0' + code / 100) || text[1] != '.') {
        return 0;
    }
    std::size_t i = 2;
    for (int part = 0; part < 2; ++part) {
        const std::size_t start = i;
        while (i < text.size() && is_digit(text[i]) && i - start < 3) {
            ++i;
        }
        if (i == start) {
            return 0;
        }
        if (part == 0) {
            if (i >= text.size() || text[i] != '.') {
                return 0;
            }
            ++i;
        }
    }
    if (i < text.size() && text[i] != ' ') {
        return 0;
    }
    return i;
}

} // namespace

void ReplyParser::feed(std::string_view bytes) { buffer_.append(bytes); }

void ReplyParser::reset() {
    buffer_.clear();
    scan_from_ = 0;
    partial_ = Reply{};
    in_reply_ = false;
    failed_.reset();
}

Result<std::optional<Reply>> ReplyParser::next() {
    if (failed_) {
        return tl::unexpected(*failed_);
    }
    auto failure = [this](std::string message) {
        failed_ = Error{ErrorKind::kProtocol, std::move(message)};
        return tl::unexpected(*failed_);
    };
    std::size_t consumed = 0;
    while (true) {
        const std::size_t lf = buffer_.find('\n', std::max(consumed, scan_from_));
        if (lf == std::string::npos) {
            // + 1: the CR of a line of the longest length may have come without its LF.
            if (buffer_.size() - consumed > kMaxReplyLineBytes + 1) {
                return failure("reply line too long");
            }
            buffer_.erase(0, consumed);
            scan_from_ = buffer_.size();
            return std::optional<Reply>{};
        }
        std::string_view line(buffer_.data() + consumed, lf - consumed);
        consumed = lf + 1;
        scan_from_ = 0;
        if (!line.empty() && line.back() == '\r') {
            line.remove_suffix(1); // servers that end lines with a bare LF are tolerated
        }
        if (line.size() > kMaxReplyLineBytes) {
            return failure("reply line too long");
        }
        if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]) ||
            (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
            return failure(fmt::format("malformed reply line \"{}\"",
                                       line.substr(0, std::min<std::size_t>(line.size(), 64))));
        }
        const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (code < 200 || code > 599) {
            return failure(fmt::format("reply code {} out of range", code));
        }
        const bool more = line.size() > 3 && line[3] == '-';
        std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view{};
        if (!in_reply_) {
            partial_ = Reply{};
            partial_.code = code;
            in_reply_ = true;
            if (const std::size_t n = enhanced_length(text, code); n > 0) {
                partial_.enhanced = std::string(text.substr(0, n));
            }
        } else if (code != partial_.code) {
            return failure(fmt::format("reply code changed from {} to {} within one reply",
                                       partial_.code, code));
        }
        if (partial_.lines.size() >= kMaxReplyLines) {
            return failure("reply has too many lines");
        }
        // Reply::wire() puts the enhanced code back on each line, so it is kept once.
        if (!partial_.enhanced.empty() && text.starts_with(partial_.enhanced)) {
            text.remove_prefix(partial_.enhanced.size());
            if (!text.empty() && text.front() == ' ') {
                text.remove_prefix(1);
            }
        }
        partial_.lines.emplace_back(text);
        if (!more) {
            in_reply_ = false;
            buffer_.erase(0, consumed);
            return std::optional<Reply>{std::move(partial_)};
        }
    }
}

Result<Reply> parse_reply(std::string_view text) {
    ReplyParser parser;
    parser.feed(text);
    auto r = parser.next();
    if (!r) {
        return tl::unexpected(r.error());
    }
    if (!*r) {
        return fail(ErrorKind::kProtocol, "incomplete reply");
    }
    if (parser.has_buffered()) {
        return fail(ErrorKind::kProtocol, "bytes after the reply");
    }
    return std::move(**r);
}

} // namespace spoold
