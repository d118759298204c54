// JSON string literals, the one piece of JSON that spoold's status endpoint and
// spoolctl's --json output both write. Escaped per RFC 8259; bytes that are not valid
// UTF-8 (overlong forms, surrogates, code points above U+10FFFF included) become U+FFFD,
// so every document parses in any consumer whatever a client put in an address.
#pragma once

#include <string>
#include <string_view>

namespace spoold::json {

// Appends `text` as a JSON string literal, quotes included. With `script_safe`, '<' is
// written as \u003c too, so the document can be inlined in an HTML <script> block.
void append_string(std::string& out, std::string_view text, bool script_safe = false);

} // namespace spoold::json
