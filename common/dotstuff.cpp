#include "common/dotstuff.hpp"

namespace spoold {

void DotStuffer::feed(std::string_view in, std::string& out) {
    out.reserve(out.size() + in.size() + in.size() / 32 + 4);
    for (const char c : in) {
        if (pending_cr_) {
            pending_cr_ = false;
            out += "\r\n";
            line_start_ = true;
            if (c == '\n') {
                continue; // the LF of a CRLF: already written
            }
        }
        if (c == '\r') {
            pending_cr_ = true; // decide at the next byte whether it was CRLF or bare CR
            continue;
        }
        if (c == '\n') {
            out += "\r\n";
            line_start_ = true;
            continue;
        }
        if (line_start_ && c == '.') {
            out += '.';
        }
        out += c;
        line_start_ = false;
    }
}

void DotStuffer::finish(std::string& out) {
    if (pending_cr_ || !line_start_) {
        out += "\r\n";
    }
    out += ".\r\n";
    reset();
}

void DotStuffer::reset() {
    line_start_ = true;
    pending_cr_ = false;
}

void LfNormalizer::feed(std::string_view in, std::string& out) {
    out.reserve(out.size() + in.size());
    for (const char c : in) {
        if (pending_cr_) {
            pending_cr_ = false;
            out += '\n';
            if (c == '\n') {
                continue;
            }
        }
        if (c == '\r') {
            pending_cr_ = true;
            continue;
        }
        out += c;
    }
}

void LfNormalizer::finish(std::string& out) {
    if (pending_cr_) {
        out += '\n';
    }
    pending_cr_ = false;
}

} // namespace spoold
