// libFuzzer target: the PROXY protocol header parser (smtp/proxy_protocol.hpp, v1 text and
// v2 binary) on the first bytes of a connection. Input: the bytes as the listener reads them.
#include <arpa/inet.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "smtp/proxy_protocol.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace spoold::smtp;
using spoold::fuzz::check;

namespace {

// An address the parser returns is canonical: printing its parse gives it back.
bool canonical(const std::string& text) {
    const int af = text.find(':') != std::string::npos ? AF_INET6 : AF_INET;
    std::array<unsigned char, 16> raw{};
    if (inet_pton(af, text.c_str(), raw.data()) != 1) {
        return false;
    }
    std::array<char, INET6_ADDRSTRLEN> out{};
    return inet_ntop(af, raw.data(), out.data(), out.size()) != nullptr && text == out.data();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    const ProxyParse r = parse_proxy_header(bytes);

    const std::size_t sig = proxy_v2_signature_prefix(bytes);
    check(sig <= kProxyV2SignatureBytes, "a signature prefix longer than the signature");

    switch (r.status) {
    case ProxyStatus::kNeedMore:
        // A parser that asks for more must have a bound: beyond it, it decides.
        check(size < kProxyV2MaxBytes, "more bytes asked for beyond the v2 bound");
        break;
    case ProxyStatus::kInvalid: check(!r.error.empty(), "a refusal without a reason"); break;
    case ProxyStatus::kDone: {
        const ProxyHeader& h = r.header;
        check(h.version == 1 || h.version == 2, "a header of no known version");
        check(r.consumed > 0 && r.consumed <= size, "consumed outside the input");
        check(r.consumed <= (h.version == 1 ? kProxyV1MaxBytes : kProxyV2MaxBytes),
              "a header over its version's size bound");
        check(h.version != 2 || sig == kProxyV2SignatureBytes, "v2 without its signature");
        if (!h.local) {
            check(canonical(h.source_address), "a source address that is not canonical");
            check(canonical(h.destination_address), "a destination address that is not canonical");
        } else {
            check(h.source_address.empty(), "a LOCAL header with a source address");
        }
        // The header alone parses the same; the bytes after it are never looked at.
        const ProxyParse alone = parse_proxy_header(bytes.substr(0, r.consumed));
        check(alone.status == ProxyStatus::kDone && alone.consumed == r.consumed &&
                  alone.header.source_address == h.source_address &&
                  alone.header.source_port == h.source_port && alone.header.local == h.local,
              "the header parses differently without what follows it");
        // One byte short of it is a valid prefix.
        check(parse_proxy_header(bytes.substr(0, r.consumed - 1)).status == ProxyStatus::kNeedMore,
              "a header's prefix is not asked to be completed");
        break;
    }
    }
    return 0;
}
