// "host:port", "[v6]:port", "host" and "[v6]" split into a host and a port: the one
// syntax of the fleet's Redis address, milter inet: addresses and spoolctl's --to.
// Syntax only: whether the host is an address or a name each caller decides.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <tl/expected.hpp>

namespace spoold::host_port {

struct Parts {
    std::string_view host; // without the brackets of an IPv6 literal
    std::string_view port; // the text after the last ':' (may be empty)
    bool has_port = false; // there was a ':' for a port
};

enum class SplitError {
    kUnclosedBracket,  // "[::1" : a '[' without its ']'
    kJunkAfterBracket, // "[::1]x": something other than ":port" after the ']'
};

// Without brackets the port starts after the last ':', so "::1:25" is host "::1", port
// "25"; a bare IPv6 address without a port needs its brackets ("[::1]").
tl::expected<Parts, SplitError> split(std::string_view text);

// A TCP port: decimal digits only, 1 to 65535.
std::optional<std::uint16_t> parse_port(std::string_view text);

} // namespace spoold::host_port
