#include "smtp/proxy_protocol.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cstring>
#include <vector>

namespace spoold::smtp {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr std::array<unsigned char, 12> kV2Signature{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                     0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::size_t kV2HeaderBytes = 16;
constexpr unsigned kV2CommandLocal = 0x0;
constexpr unsigned kV2CommandProxy = 0x1;
constexpr unsigned kV2FamilyTcp4 = 0x11;
constexpr unsigned kV2FamilyTcp6 = 0x21;
constexpr std::size_t kV2Tcp4Bytes = 4 + 4 + 2 + 2;
constexpr std::size_t kV2Tcp6Bytes = 16 + 16 + 2 + 2;

ProxyParse invalid(std::string why) {
    ProxyParse p;
    p.status = ProxyStatus::kInvalid;
    p.error = std::move(why);
    return p;
}

// A strict textual address of family `af` back to its canonical text, or empty.
std::string canonical(int af, std::string_view text) {
    if (text.find('\0') != std::string_view::npos) {
        return {}; // inet_pton would stop at it and take the prefix
    }
    const std::string z(text);
    std::array<unsigned char, 16> raw{};
    if (inet_pton(af, z.c_str(), raw.data()) != 1) {
        return {};
    }
    std::array<char, INET6_ADDRSTRLEN> out{};
    if (inet_ntop(af, raw.data(), out.data(), out.size()) == nullptr) {
        return {};
    }
    return out.data();
}

std::string from_raw(int af, const unsigned char* raw) {
    std::array<char, INET6_ADDRSTRLEN> out{};
    if (inet_ntop(af, raw, out.data(), out.size()) == nullptr) {
        return {};
    }
    return out.data();
}

// A port in v1: decimal 0-65535 without a sign or leading zeros.
bool parse_port(std::string_view text, std::uint16_t& port) {
    if (text.empty() || text.size() > 5 || (text.size() > 1 && text.front() == '0')) {
        return false;
    }
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value > 65535) {
        return false;
    }
    port = static_cast<std::uint16_t>(value);
    return true;
}

ProxyParse parse_v1(std::string_view bytes) {
    const std::size_t crlf = bytes.find("\r\n");
    if (crlf == std::string_view::npos) {
        if (bytes.size() >= kProxyV1MaxBytes) {
            return invalid("v1 header without CRLF within 107 bytes");
        }
        if (bytes.find('\n') != std::string_view::npos) {
            return invalid("v1 header ends in a bare LF");
        }
        return {};
    }
    if (crlf + 2 > kProxyV1MaxBytes) {
        return invalid("v1 header longer than 107 bytes");
    }
    // Refused whole as it is refused in parts (above), however the reads cut it.
    if (bytes.substr(0, crlf).find('\n') != std::string_view::npos) {
        return invalid("v1 header ends in a bare LF");
    }
    std::vector<std::string_view> words;
    std::string_view line = bytes.substr(0, crlf);
    while (!line.empty()) {
        const std::size_t sp = line.find(' ');
        words.push_back(line.substr(0, sp));
        if (sp == std::string_view::npos) {
            break;
        }
        line.remove_prefix(sp + 1);
    }
    ProxyParse p;
    p.status = ProxyStatus::kDone;
    p.consumed = crlf + 2;
    p.header.version = 1;
    if (words.size() >= 2 && words[1] == "UNKNOWN") {
        p.header.local = true; // the rest of the line is to be ignored (spec 2.1)
        return p;
    }
    if (words.size() != 6 || (words[1] != "TCP4" && words[1] != "TCP6")) {
        return invalid("v1 header is not PROXY TCP4|TCP6|UNKNOWN src dst sport dport");
    }
    const int af = words[1] == "TCP4" ? AF_INET : AF_INET6;
    p.header.source_address = canonical(af, words[2]);
    p.header.destination_address = canonical(af, words[3]);
    if (p.header.source_address.empty() || p.header.destination_address.empty()) {
        return invalid("v1 header with an address that is not " + std::string(words[1]));
    }
    if (!parse_port(words[4], p.header.source_port) ||
        !parse_port(words[5], p.header.destination_port)) {
        return invalid("v1 header with a bad port");
    }
    return p;
}

ProxyParse parse_v2(std::string_view bytes) {
    const auto* u = reinterpret_cast<const unsigned char*>(bytes.data());
    const std::size_t have = std::min(bytes.size(), kV2Signature.size());
    if (std::memcmp(u, kV2Signature.data(), have) != 0) {
        return invalid("neither a v1 nor a v2 PROXY header");
    }
    if (bytes.size() < kV2HeaderBytes) {
        return {};
    }
    const unsigned version = u[12] >> 4U;
    const unsigned command = u[12] & 0x0FU;
    const unsigned family = u[13];
    const std::size_t length = (std::size_t{u[14]} << 8U) | u[15];
    if (version != 2) {
        return invalid(fmt::format("v2 header with version {}", version));
    }
    if (command != kV2CommandLocal && command != kV2CommandProxy) {
        return invalid(fmt::format("v2 header with command {}", command));
    }
    if (kV2HeaderBytes + length > kProxyV2MaxBytes) {
        return invalid(fmt::format("v2 header of {} bytes is too long", kV2HeaderBytes + length));
    }
    if (bytes.size() < kV2HeaderBytes + length) {
        return {};
    }
    ProxyParse p;
    p.status = ProxyStatus::kDone;
    p.consumed = kV2HeaderBytes + length;
    p.header.version = 2;
    const unsigned char* a = u + kV2HeaderBytes;
    if (command == kV2CommandLocal || (family != kV2FamilyTcp4 && family != kV2FamilyTcp6)) {
        p.header.local = true; // health checks, UDP, Unix sockets: the peer is the client
        return p;
    }
    const bool v4 = family == kV2FamilyTcp4;
    const std::size_t need = v4 ? kV2Tcp4Bytes : kV2Tcp6Bytes;
    if (length < need) {
        return invalid(fmt::format("v2 address block of {} bytes, {} needed", length, need));
    }
    const std::size_t addr = v4 ? 4 : 16;
    p.header.source_address = from_raw(v4 ? AF_INET : AF_INET6, a);
    p.header.destination_address = from_raw(v4 ? AF_INET : AF_INET6, a + addr);
    p.header.source_port = static_cast<std::uint16_t>((a[2 * addr] << 8U) | a[2 * addr + 1]);
    p.header.destination_port =
        static_cast<std::uint16_t>((a[2 * addr + 2] << 8U) | a[2 * addr + 3]);
    // TLVs after the addresses (ALPN, unique id, SSL facts...) are not needed here.
    return p;
}

} // namespace

std::size_t proxy_v2_signature_prefix(std::string_view bytes) {
    static_assert(kV2Signature.size() == kProxyV2SignatureBytes);
    const std::size_t have = std::min(bytes.size(), kV2Signature.size());
    if (have == 0 || std::memcmp(bytes.data(), kV2Signature.data(), have) != 0) {
        return 0;
    }
    return have;
}

ProxyParse parse_proxy_header(std::string_view bytes) {
    if (bytes.empty()) {
        return {};
    }
    if (bytes.front() == 'P') {
        const std::size_t have = std::min(bytes.size(), kV1Prefix.size());
        if (bytes.substr(0, have) != kV1Prefix.substr(0, have)) {
            return invalid("neither a v1 nor a v2 PROXY header");
        }
        return bytes.size() < kV1Prefix.size() ? ProxyParse{} : parse_v1(bytes);
    }
    return parse_v2(bytes);
}

} // namespace spoold::smtp
