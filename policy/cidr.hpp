// IP addresses and CIDR networks for client_net rules: parse and match, IPv4 and IPv6
// (IPv4-mapped IPv6 matches IPv4 networks). No DNS, no sockets.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace spoold::policy {

struct IpAddress {
    std::array<std::uint8_t, 16> bytes{}; // IPv4 in the first 4 bytes
    bool v4 = false;

    friend bool operator==(const IpAddress&, const IpAddress&) = default;
};

// "203.0.113.5", "2001:db8::1", also "[...]" and "IPv6:..." as SMTP writes them.
// "::ffff:a.b.c.d" becomes the IPv4 address.
std::optional<IpAddress> parse_ip(std::string_view text);

struct Cidr {
    IpAddress network; // host bits cleared
    int prefix = 0;

    bool contains(const IpAddress& address) const;
};

// "10.0.0.0/8", "2001:db8::/32"; a bare address is a /32 or /128. Host bits set in the
// network part are refused (a typo for a different network is likelier than intent).
// Errors: kInvalid.
Result<Cidr> parse_cidr(std::string_view text);

} // namespace spoold::policy
