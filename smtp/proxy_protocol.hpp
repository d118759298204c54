// The PROXY protocol header (HAProxy's specification, version 1 text and version 2
// binary) that a load balancer sends before any SMTP byte: parsed from the start of a
// connection into the real client's address. Pure and bounded; which peers may send a
// header is the listener's decision (smtp/listener.hpp), not the parser's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace spoold::smtp {

// A version 1 header is at most 107 bytes; a version 2 header is 16 bytes plus its
// address block and TLVs, which we accept up to this size.
inline constexpr std::size_t kProxyV1MaxBytes = 107;
inline constexpr std::size_t kProxyV2MaxBytes = 16 + 4096;

struct ProxyHeader {
    int version = 0;
    // The connection is the proxy's own (v2 LOCAL, v1 UNKNOWN, or an address family that
    // is not TCP over IPv4/IPv6): keep the peer's address.
    bool local = false;
    std::string source_address; // canonical text ("192.0.2.1", "2001:db8::1")
    std::uint16_t source_port = 0;
    std::string destination_address;
    std::uint16_t destination_port = 0;
};

enum class ProxyStatus {
    kNeedMore, // a valid prefix: read more (up to the size bound)
    kDone,     // `header` is set and `consumed` bytes were the header
    kInvalid,  // not a PROXY header, or a broken one: `error` says why
};

struct ProxyParse {
    ProxyStatus status = ProxyStatus::kNeedMore;
    ProxyHeader header;
    std::size_t consumed = 0;
    std::string error;
};

// Parses the header at the start of `bytes` (everything read so far). Bytes after the
// header are not looked at: they are the client's first SMTP bytes.
ProxyParse parse_proxy_header(std::string_view bytes);

// How much of the 12-byte version 2 signature `bytes` starts with: 0 when it is not a
// prefix of it, 12 when the whole signature is there. A listener without the PROXY
// protocol uses it to refuse a binary header instead of reading it as SMTP lines.
std::size_t proxy_v2_signature_prefix(std::string_view bytes);
inline constexpr std::size_t kProxyV2SignatureBytes = 12;

} // namespace spoold::smtp
