// UTF-8 well-formedness, shared by address validation (SMTPUTF8) and JSON output.
#pragma once

#include <cstddef>
#include <string_view>

namespace spoold::utf8 {

// Length (1-4) of the well-formed UTF-8 sequence that starts at text[i], or 0 when it is
// not one: a stray continuation byte, a truncated sequence, an overlong form, a surrogate
// or a code point above U+10FFFF. Requires i < text.size().
std::size_t sequence_length(std::string_view text, std::size_t i);

} // namespace spoold::utf8
