// What a message moved by `spoolctl xfer` carries to the peer spool: its class name, arrival
// time and expiry, as the value of one MAIL FROM parameter. Encoding and parsing only: who
// may make the claim (xfer.peers) is the receiving daemon's decision, not this file's.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/clock.hpp"

namespace spoold {

// The MAIL FROM parameter keyword (RFC 5321 esmtp-keyword; X-prefixed: our own extension).
inline constexpr std::string_view kXferParam = "XSPOOLD-XFER";

struct XferClaim {
    std::string class_name;
    UnixMillis arrival_ms = 0;
    UnixMillis expires_ms = 0; // 0 = never

    bool operator==(const XferClaim&) const = default;
};

// "bulk,1700000000000,1700086400000": a valid esmtp-value (no spaces, no '=').
std::string format_xfer_claim(const XferClaim& claim);
// The inverse; empty for anything else (a class name must be 1-64 of [A-Za-z0-9_.-], the
// times non-negative decimals).
std::optional<XferClaim> parse_xfer_claim(std::string_view value);

} // namespace spoold
