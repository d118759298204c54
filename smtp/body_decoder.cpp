#include "smtp/body_decoder.hpp"

#include <algorithm>

namespace spoold::smtp {

void BodyDecoder::reset() { *this = BodyDecoder(); }

void BodyDecoder::begin_data() {
    mode_ = Mode::kData;
    line_ = Line::kStart;
}

void BodyDecoder::begin_chunk(std::uint64_t size, bool last) {
    mode_ = Mode::kChunk;
    chunk_remaining_ = size;
    chunk_last_ = last;
}

void BodyDecoder::skip_chunk(std::uint64_t size) {
    mode_ = Mode::kSkip;
    chunk_remaining_ = size;
    chunk_last_ = false;
}

DecodeStep BodyDecoder::decode(std::string_view in, std::string& out) {
    DecodeStep step;
    switch (mode_) {
    case Mode::kIdle: break;
    case Mode::kData: decode_data(in, out, step); break;
    case Mode::kChunk:
    case Mode::kSkip: decode_chunk(in, out, step); break;
    }
    return step;
}

void BodyDecoder::decode_data(std::string_view in, std::string& out, DecodeStep& step) {
    const std::size_t before = out.size();
    const std::size_t n = in.size();
    std::size_t i = 0;
    while (i < n) {
        const char c = in[i];
        switch (line_) {
        case Line::kMid: {
            std::size_t j = i;
            while (j < n && in[j] != '\r' && in[j] != '\n') {
                nul_byte_ = nul_byte_ || in[j] == '\0';
                ++j;
            }
            out.append(in.substr(i, j - i));
            i = j;
            if (i < n) {
                if (in[i] == '\r') {
                    line_ = Line::kCr;
                } else {
                    bare_newline_ = true; // LF without CR: not a line end
                    out += '\n';
                }
                ++i;
            }
            break;
        }
        case Line::kStart:
            if (c == '.') {
                line_ = Line::kDot;
                ++i;
            } else {
                line_ = Line::kMid;
            }
            break;
        case Line::kCr:
            if (c == '\n') {
                out += "\r\n";
                line_ = Line::kStart;
                ++i;
            } else {
                bare_newline_ = true; // CR without LF
                out += '\r';
                line_ = Line::kMid;
            }
            break;
        case Line::kDot:
            if (c == '\r') {
                line_ = Line::kDotCr;
                ++i;
            } else {
                line_ = Line::kMid; // a leading dot is removed (RFC 5321 4.5.2)
            }
            break;
        case Line::kDotCr:
            if (c == '\n') {
                ++i;
                mode_ = Mode::kIdle;
                step.end = ContentEnd::kMessage;
                step.consumed = i;
                step.produced = out.size() - before;
                return;
            }
            bare_newline_ = true;
            out += '\r';
            line_ = Line::kMid;
            break;
        }
    }
    step.consumed = n;
    step.produced = out.size() - before;
}

void BodyDecoder::decode_chunk(std::string_view in, std::string& out, DecodeStep& step) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_remaining_, in.size()));
    chunk_remaining_ -= n;
    step.consumed = n;
    if (mode_ == Mode::kSkip) {
        if (chunk_remaining_ == 0) {
            mode_ = Mode::kIdle;
            step.end = ContentEnd::kSkipped;
        }
        return;
    }
    const std::string_view bytes = in.substr(0, n);
    // No dot-stuffing in BDAT, but the same bare CR/LF and NUL rules, so that what we relay
    // with DATA cannot be smuggled.
    for (const char c : bytes) {
        if ((last_byte_ == '\r') != (c == '\n')) {
            bare_newline_ = true;
        }
        nul_byte_ = nul_byte_ || c == '\0';
        last_byte_ = c;
    }
    out.append(bytes);
    chunked_bytes_ += n;
    step.produced = n;
    if (chunk_remaining_ > 0) {
        return;
    }
    mode_ = Mode::kIdle;
    step.end = chunk_last_ ? ContentEnd::kMessage : ContentEnd::kChunk;
}

std::size_t BodyDecoder::finish(std::string& out) {
    // After DATA both tests are false: last_byte_ is kept for chunks only.
    if (last_byte_ == '\r') {
        bare_newline_ = true; // the CR of a CRLF whose LF never came
        return 0;
    }
    if (chunked_bytes_ > 0 && last_byte_ != '\n') {
        // The last line lacks its CRLF: complete it, so the stored message is lines.
        out += "\r\n";
        return 2;
    }
    return 0;
}

} // namespace spoold::smtp
