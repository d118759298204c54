#include "common/dotstuff.hpp"

#include <cstring>

namespace spoold {

void DotStuffer::feed(std::string_view in, std::string& out) {
    out.reserve(out.size() + in.size() + in.size() / 32 + 4);
    std::size_t i = 0;
    std::size_t lf_at = 0; // the first LF at or after i (in.size() when none), once known
    bool lf_known = false;
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
        // lines, and this is the drain's per-byte cost. The next LF is found once (memchr
        // from where the last one was), a CR only up to it: linear whatever the line ends
        // (find_first_of with a two-byte set calls memchr once per byte of the body).
        if (!lf_known || lf_at < i) {
            const void* lf = std::memchr(in.data() + i, '\n', in.size() - i);
            lf_at = lf == nullptr
                        ? in.size()
                        : static_cast<std::size_t>(static_cast<const char*>(lf) - in.data());
            lf_known = true;
        }
        const void* cr = std::memchr(in.data() + i, '\r', lf_at - i);
        const std::size_t stop =
            cr == nullptr ? lf_at
                          : static_cast<std::size_t>(static_cast<const char*>(cr) - in.data());
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
