#include "common/dotstuff.hpp"

namespace spoold {

void DotStuffer::feed(std::string_view in, std::string& out) {
    out.reserve(out.size() + in.size() + in.size() / 32 + 4);
    std::size_t i = 0;
    while (i < in.size()) {
        if (pending_cr_) {
            pending_cr_ = false;
            out += "\r\n";
            line_start_ = true;
            if (in[i] == '\n') {
                ++i; // the LF of a CRLF: already written
                continue;
            }
        }
        if (line_start_ && in[i] == '.') {
            out += '.';
        }
        // Copy the run up to the next line end in one append: bodies are mostly text
        // lines, and this is the drain's per-byte cost. A plain loop: find_first_of with
        // a two-byte set calls memchr once per byte of the body.
        std::size_t stop = i;
        while (stop < in.size() && in[stop] != '\r' && in[stop] != '\n') {
            ++stop;
        }
        if (stop > i) {
            out.append(in.substr(i, stop - i));
            line_start_ = false;
            i = stop;
        }
        if (i == in.size()) {
            break;
        }
        if (in[i] == '\r') {
            pending_cr_ = true; // decide at the next byte whether it was CRLF or bare CR
        } else {
            out += "\r\n";
            line_start_ = true;
        }
        ++i;
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
