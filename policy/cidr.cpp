#include "policy/cidr.hpp"

#include <arpa/inet.h>
#include <charconv>
#include <cstring>
#include <strings.h>

namespace spoold::policy {

std::optional<IpAddress> parse_ip(std::string_view text) {
    if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
        text = text.substr(1, text.size() - 2);
    }
    constexpr std::string_view kV6Tag = "IPv6:";
    if (text.size() > kV6Tag.size() &&
        strncasecmp(text.data(), kV6Tag.data(), kV6Tag.size()) == 0) {
        text.remove_prefix(kV6Tag.size());
    }
    // inet_pton wants a terminated string (and would stop at an embedded NUL);
    // INET6_ADDRSTRLEN bounds any valid address.
    if (text.empty() || text.size() >= INET6_ADDRSTRLEN ||
        text.find('\0') != std::string_view::npos) {
        return std::nullopt;
    }
    const std::string z(text);
    IpAddress out;
    if (inet_pton(AF_INET, z.c_str(), out.bytes.data()) == 1) {
        out.v4 = true;
        return out;
    }
    if (inet_pton(AF_INET6, z.c_str(), out.bytes.data()) != 1) {
        return std::nullopt;
    }
    static constexpr std::array<std::uint8_t, 12> kMapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(out.bytes.data(), kMapped.data(), kMapped.size()) == 0) {
        IpAddress v4;
        v4.v4 = true;
        std::memcpy(v4.bytes.data(), out.bytes.data() + kMapped.size(), 4);
        return v4;
    }
    return out;
}

namespace {

bool prefix_equal(const IpAddress& a, const IpAddress& b, int prefix) {
    const auto whole = static_cast<std::size_t>(prefix / 8);
    if (std::memcmp(a.bytes.data(), b.bytes.data(), whole) != 0) {
        return false;
    }
    const int rest = prefix % 8;
    if (rest == 0) {
        return true;
    }
    const auto mask = static_cast<std::uint8_t>(0xffU << static_cast<unsigned>(8 - rest));
    return (a.bytes[whole] & mask) == (b.bytes[whole] & mask);
}

} // namespace

bool Cidr::contains(const IpAddress& address) const {
    return address.v4 == network.v4 && prefix_equal(address, network, prefix);
}

Result<Cidr> parse_cidr(std::string_view text) {
    const auto slash = text.find('/');
    const auto address = parse_ip(text.substr(0, slash));
    if (!address) {
        return fail(ErrorKind::kInvalid, "not an IP network: \"" + std::string(text) + "\"");
    }
    const int max_prefix = address->v4 ? 32 : 128;
    int prefix = max_prefix;
    if (slash != std::string_view::npos) {
        const std::string_view p = text.substr(slash + 1);
        const auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
        if (p.empty() || ec != std::errc{} || ptr != p.data() + p.size() || prefix < 0 ||
            prefix > max_prefix) {
            return fail(ErrorKind::kInvalid, "bad prefix length in \"" + std::string(text) +
                                                 "\" (0 to " + std::to_string(max_prefix) + ")");
        }
    }
    // Host bits: every bit after the prefix must be zero.
    for (int bit = prefix; bit < max_prefix; ++bit) {
        const auto byte = static_cast<std::size_t>(bit / 8);
        const auto mask = static_cast<std::uint8_t>(0x80U >> static_cast<unsigned>(bit % 8));
        if ((address->bytes[byte] & mask) != 0) {
            return fail(ErrorKind::kInvalid,
                        "host bits set in network \"" + std::string(text) + "\"");
        }
    }
    Cidr out{*address, prefix};
    return out;
}

} // namespace spoold::policy
