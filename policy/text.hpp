// Small ASCII text helpers shared inside policy/ (lower-casing, domain syntax).
// Not a general string library and not for other components.
#pragma once

#include <string>
#include <string_view>

#include "common/address.hpp"

namespace spoold::policy {

using address::ascii_lower;
// Letters, digits, '-', '_' and non-empty dot-separated labels, at most 253 octets.
// Deliberately loose (no label-length or hyphen rules): it catches typos, not policy.
bool valid_domain(std::string_view domain);

} // namespace spoold::policy
