// A bounded scan of a message's header: at most the first `max_bytes` are read and turned
// into (name, unfolded value) pairs. Tolerant of garbage (it skips what it cannot read)
// and never reads past the bound; no MIME, no RFC 2047 decoding, no validation.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace spoold::policy {

// Classification reads this much of a message; header fields beyond it are not seen.
inline constexpr std::size_t kHeaderScanBytes = 64 * 1024;

struct HeaderField {
    std::string name;  // as written (compare case-insensitively)
    std::string value; // folding removed, leading and trailing blanks trimmed
};

// Fields in order of appearance. Stops at the first empty line (end of the header), at
// the bound, or at the end of `message`. Lines end in CRLF or bare LF. A line cut by the
// bound is dropped (its value would be truncated); lines without a colon, with a bad
// field name or a continuation before any field are skipped.
std::vector<HeaderField> scan_headers(std::string_view message,
                                      std::size_t max_bytes = kHeaderScanBytes);

// Case-insensitive ASCII comparison of header field names.
bool header_name_equal(std::string_view a, std::string_view b);

} // namespace spoold::policy
