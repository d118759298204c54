#include "common/reply.hpp"

#include <fmt/format.h>

namespace spoold {

std::string Reply::wire() const {
    std::string out;
    const std::string prefix = enhanced.empty() ? std::string() : enhanced + " ";
    if (lines.empty()) {
        return fmt::format("{} {}\r\n", code, enhanced);
    }
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const char sep = i + 1 == lines.size() ? ' ' : '-';
        out += fmt::format("{}{}{}{}\r\n", code, sep, prefix, lines[i]);
    }
    return out;
}

std::string Reply::summary() const {
    std::string text;
    for (const auto& l : lines) {
        if (!text.empty()) {
            text += ' ';
        }
        text += l;
    }
    return enhanced.empty() ? fmt::format("{} {}", code, text)
                            : fmt::format("{} {} {}", code, enhanced, text);
}

Reply make_reply(int code, std::string_view enhanced, std::string_view text) {
    return Reply{code, std::string(enhanced), {std::string(text)}};
}

Reply reply_for_local_error(const Error& error) {
    switch (error.kind) {
    case ErrorKind::kSpoolFull:
    case ErrorKind::kDiskFull:
        return make_reply(452, "4.3.1", "Insufficient system storage, try again later");
    case ErrorKind::kShutdown:
        return make_reply(421, "4.3.2", "Service shutting down, try again later");
    case ErrorKind::kTimeout:
    case ErrorKind::kUnavailable:
    case ErrorKind::kIo:
    case ErrorKind::kCorrupt:
    case ErrorKind::kInternal:
    case ErrorKind::kConfig:
    case ErrorKind::kNotFound:
    case ErrorKind::kInvalid:
    case ErrorKind::kProtocol: break;
    }
    return make_reply(451, "4.3.0", "Local error in processing, try again later");
}

} // namespace spoold
