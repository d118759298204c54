// ASCII trimming shared by every component: protocol lines, config values, mbox headers.
// Byte-wise and locale-free; not a string library (lower-casing is address::ascii_lower).
#pragma once

#include <string_view>

namespace spoold::ascii {

// Spaces and tabs: the blanks of RFC 5322 and of our config syntax.
inline constexpr std::string_view kBlanks = " \t";
// Blanks and a CR left over from a CRLF line that was split at the LF.
inline constexpr std::string_view kBlanksCr = " \t\r";

// `s` without the leading (trim_left), trailing (trim_right) or both (trim) characters
// that are in `chars`.
std::string_view trim_left(std::string_view s, std::string_view chars = kBlanks);
std::string_view trim_right(std::string_view s, std::string_view chars = kBlanks);
std::string_view trim(std::string_view s, std::string_view chars = kBlanks);

} // namespace spoold::ascii
