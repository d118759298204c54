// Message content as the client sends it after DATA or in BDAT chunks -> the message bytes:
// dot-stuffing undone, the end of DATA found (only CRLF "." CRLF), bare CR and LF and NUL
// bytes noticed, BDAT chunk sizes counted. Pure: no size limit, no buffering of its own, no
// replies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace spoold::smtp {

// What decode() reached at the end of the bytes it consumed.
enum class ContentEnd {
    kNone,    // needs more input
    kMessage, // the message ended: CRLF.CRLF after DATA, or the end of BDAT LAST's chunk
    kChunk,   // the end of a BDAT chunk that is not the last
    kSkipped, // the end of a refused BDAT chunk, read and dropped
};

struct DecodeStep {
    std::size_t consumed = 0; // input bytes used, including the end-of-data line
    std::size_t produced = 0; // message bytes appended to `out`
    ContentEnd end = ContentEnd::kNone;
};

// One message's content; reset() before the next. Rules (RFC 5321 4.1.1.4, 4.5.2, 2.3.8;
// RFC 3030): a line's leading dot is removed; only CRLF "." CRLF ends DATA; a CR not
// followed by LF or an LF not preceded by CR (a bare CR or LF) is kept as content and
// makes bare_newline() true, so no smuggled end-of-data sequence can end a message early
// and the caller can refuse the whole message at its end. A NUL byte is kept and noted the
// same way (nul_byte()): RFC 5321 2.3.8 allows no NUL in mail text, and receivers that
// end a C string there would see a different message than the one we store. BDAT content
// is taken as is, with the same bare CR/LF and NUL rules across chunk boundaries; a CRLF
// may be split between two chunks. finish() gives the last chunk's final line a CRLF if
// it lacks one.
class BodyDecoder {
public:
    // A new message: forgets bare CR/LF and NUL, the BDAT byte count and any content in progress.
    void reset();
    // DATA was accepted: content starts at the beginning of a line.
    void begin_data();
    // A BDAT chunk of `size` bytes was accepted; `last` for BDAT ... LAST.
    void begin_chunk(std::uint64_t size, bool last);
    // A BDAT chunk of `size` bytes was refused: its bytes are read and dropped.
    void skip_chunk(std::uint64_t size);

    // Decodes from the start of `in`, appending message bytes to `out`. Stops at the end
    // of DATA or of the chunk (the rest of `in` is left for the caller), or at the end of
    // `in`. A chunk of size 0 ends on an empty `in`. Outside DATA and chunks: no-op.
    DecodeStep decode(std::string_view in, std::string& out);
    // After decode() said kMessage: completes a chunked message's last line (appends
    // CRLF to `out` if it lacks one, or notes a final bare CR) and returns the bytes
    // appended. Separate from decode() so the caller can hand on what it has first.
    std::size_t finish(std::string& out);

    bool bare_newline() const { return bare_newline_; }
    bool nul_byte() const { return nul_byte_; }
    // The message is to be refused at its end (bare CR or LF, or a NUL byte).
    bool refused() const { return bare_newline_ || nul_byte_; }

private:
    enum class Mode { kIdle, kData, kChunk, kSkip };
    enum class Line { kStart, kMid, kCr, kDot, kDotCr };

    void decode_data(std::string_view in, std::string& out, DecodeStep& step);
    void decode_chunk(std::string_view in, std::string& out, DecodeStep& step);

    Mode mode_ = Mode::kIdle;
    bool bare_newline_ = false;
    bool nul_byte_ = false;
    // DATA: where in a line the last byte left us.
    Line line_ = Line::kStart;
    // BDAT: bytes still to come in this chunk, whether it is the last, and what the
    // message's chunks carried so far.
    std::uint64_t chunk_remaining_ = 0;
    bool chunk_last_ = false;
    std::uint64_t chunked_bytes_ = 0;
    char last_byte_ = 0; // the CR of a CRLF may end one chunk
};

} // namespace spoold::smtp
