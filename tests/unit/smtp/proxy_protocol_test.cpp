#include <doctest/doctest.h>

#include <string>

#include "smtp/proxy_protocol.hpp"

using namespace spoold::smtp;

namespace {

const std::string kSig("\r\n\r\n\0\r\nQUIT\n", 12);

std::string be16(unsigned v) {
    return std::string{static_cast<char>(v >> 8U), static_cast<char>(v & 0xFFU)};
}

// A v2 header: signature, version/command, family, length, then `block`.
std::string v2(unsigned ver_cmd, unsigned family, const std::string& block) {
    return kSig + static_cast<char>(ver_cmd) + static_cast<char>(family) + be16(block.size()) +
           block;
}

const std::string kTcp4Block = std::string("\xC0\x00\x02\x01", 4) + // 192.0.2.1
                               std::string("\xC6\x33\x64\x07", 4) + // 198.51.100.7
                               be16(54321) + be16(25);
const std::string kTcp6Block = std::string("\x20\x01\x0d\xb8", 4) + std::string(11, '\0') +
                               "\x05" +                         // 2001:db8::5
                               std::string(15, '\0') + "\x01" + // ::1
                               be16(40000) + be16(2525);

} // namespace

TEST_CASE("PROXY v1 headers: the client's address, or why not") {
    struct Row {
        std::string input;
        ProxyStatus status;
        std::string source;
        unsigned port;
        bool local;
    };
    const Row rows[] = {
        {"PROXY TCP4 192.0.2.1 198.51.100.7 54321 25\r\nEHLO", ProxyStatus::kDone, "192.0.2.1",
         54321, false},
        {"PROXY TCP6 2001:DB8::5 ::1 40000 2525\r\n", ProxyStatus::kDone, "2001:db8::5", 40000,
         false},
        {"PROXY UNKNOWN\r\n", ProxyStatus::kDone, "", 0, true},
        {"PROXY UNKNOWN ffff:f...:ffff ffff:f...:ffff 65535 65535\r\n", ProxyStatus::kDone, "", 0,
         true},
        {"PROXY TCP4 192.0.2.1 198.51.100.7 0 65535\r\n", ProxyStatus::kDone, "192.0.2.1", 0,
         false},
        // Incomplete: wait for more.
        {"", ProxyStatus::kNeedMore, "", 0, false},
        {"PRO", ProxyStatus::kNeedMore, "", 0, false},
        {"PROXY TCP4 192.0.2.1", ProxyStatus::kNeedMore, "", 0, false},
        {"PROXY TCP4 192.0.2.1 198.51.100.7 54321 25\r", ProxyStatus::kNeedMore, "", 0, false},
        // Broken.
        {"EHLO client.example\r\n", ProxyStatus::kInvalid, "", 0, false},
        {"PROXZ TCP4", ProxyStatus::kInvalid, "", 0, false},
        {"PROXY TCP4 192.0.2.1 198.51.100.7 54321 25\n", ProxyStatus::kInvalid, "", 0, false},
        {"PROXY TCP4 2001:db8::1 198.51.100.7 1 2\r\n", ProxyStatus::kInvalid, "", 0, false},
        {"PROXY TCP6 192.0.2.1 ::1 1 2\r\n", ProxyStatus::kInvalid, "", 0, false},
        {"PROXY TCP4 192.0.2.256 198.51.100.7 1 2\r\n", ProxyStatus::kInvalid, "", 0, false},
        {"PROXY TCP4 192.0.2.1 198.51.100.7 65536 2\r\n", ProxyStatus::kInvalid, "", 0, false},
        {"PROXY TCP4 192.0.2.1 198.51.100.7 -1 2\r\n", ProxyStatus::kInvalid, "", 0, false},
        {"PROXY TCP4 192.0.2.1 198.51.100.7 025 2\r\n", ProxyStatus::kInvalid, "", 0, false},
        {"PROXY TCP4 192.0.2.1 198.51.100.7 1\r\n", ProxyStatus::kInvalid, "", 0, false},
        {"PROXY TCP4  192.0.2.1 198.51.100.7 1 2\r\n", ProxyStatus::kInvalid, "", 0, false},
        {"PROXY UDP4 192.0.2.1 198.51.100.7 1 2\r\n", ProxyStatus::kInvalid, "", 0, false},
        {"PROXY TCP4 " + std::string(200, '1'), ProxyStatus::kInvalid, "", 0, false},
        // As fuzz_proxy_header demands: a bare LF is refused whether or not the CRLF came in
        // the same read, and an address with a NUL is not read as its prefix.
        {"PROXY UNKNOWN a\nb\r\n", ProxyStatus::kInvalid, "", 0, false},
        {"PROXY TCP4 192.0.2.1" + std::string(1, '\0') + "9 198.51.100.7 1 2\r\n",
         ProxyStatus::kInvalid, "", 0, false},
    };
    for (const auto& row : rows) {
        CAPTURE(row.input);
        const ProxyParse p = parse_proxy_header(row.input);
        CHECK(p.status == row.status);
        if (p.status == ProxyStatus::kDone) {
            CHECK(p.header.version == 1);
            CHECK(p.header.local == row.local);
            CHECK(p.header.source_address == row.source);
            CHECK(p.header.source_port == row.port);
            CHECK(row.input.substr(0, p.consumed).ends_with("\r\n"));
        }
        if (p.status == ProxyStatus::kInvalid) {
            CHECK_FALSE(p.error.empty());
        }
    }
    const ProxyParse p = parse_proxy_header("PROXY TCP4 192.0.2.1 198.51.100.7 54321 25\r\nEHLO");
    CHECK(p.header.destination_address == "198.51.100.7");
    CHECK(p.header.destination_port == 25);
    CHECK(p.consumed == 44); // "EHLO" is the client's, left for SMTP
}

TEST_CASE("PROXY v2 headers: addresses, LOCAL, families, TLVs, and broken ones") {
    const ProxyParse tcp4 = parse_proxy_header(v2(0x21, 0x11, kTcp4Block) + "EHLO x\r\n");
    REQUIRE(tcp4.status == ProxyStatus::kDone);
    CHECK(tcp4.header.version == 2);
    CHECK_FALSE(tcp4.header.local);
    CHECK(tcp4.header.source_address == "192.0.2.1");
    CHECK(tcp4.header.source_port == 54321);
    CHECK(tcp4.header.destination_address == "198.51.100.7");
    CHECK(tcp4.header.destination_port == 25);
    CHECK(tcp4.consumed == 16 + 12);

    const ProxyParse tcp6 = parse_proxy_header(v2(0x21, 0x21, kTcp6Block));
    REQUIRE(tcp6.status == ProxyStatus::kDone);
    CHECK(tcp6.header.source_address == "2001:db8::5");
    CHECK(tcp6.header.source_port == 40000);
    CHECK(tcp6.header.destination_address == "::1");

    // TLVs after the addresses are skipped.
    const std::string tlv =
        std::string("\x01", 1) + be16(2) + "h2" + std::string("\x05", 1) + be16(4) + "uniq";
    const ProxyParse with_tlv = parse_proxy_header(v2(0x21, 0x11, kTcp4Block + tlv));
    REQUIRE(with_tlv.status == ProxyStatus::kDone);
    CHECK(with_tlv.consumed == 16 + kTcp4Block.size() + tlv.size());
    CHECK(with_tlv.header.source_address == "192.0.2.1");

    // LOCAL (health checks), UNSPEC, UDP and Unix families: the peer is the client.
    for (const auto& [cmd, fam] :
         {std::pair{0x20U, 0x00U}, std::pair{0x20U, 0x11U}, std::pair{0x21U, 0x00U},
          std::pair{0x21U, 0x12U}, std::pair{0x21U, 0x31U}}) {
        CAPTURE(cmd);
        CAPTURE(fam);
        const std::string block = fam == 0x11U || fam == 0x12U ? kTcp4Block : "";
        const ProxyParse p = parse_proxy_header(v2(cmd, fam, block));
        REQUIRE(p.status == ProxyStatus::kDone);
        CHECK(p.header.local);
    }

    // Every proper prefix asks for more.
    const std::string whole = v2(0x21, 0x21, kTcp6Block);
    for (std::size_t n = 1; n < whole.size(); ++n) {
        CAPTURE(n);
        CHECK(parse_proxy_header(whole.substr(0, n)).status == ProxyStatus::kNeedMore);
    }

    // Broken: version, command, short address block, too long, a wrong signature.
    CHECK(parse_proxy_header(v2(0x11, 0x11, kTcp4Block)).status == ProxyStatus::kInvalid);
    CHECK(parse_proxy_header(v2(0x22, 0x11, kTcp4Block)).status == ProxyStatus::kInvalid);
    CHECK(parse_proxy_header(v2(0x21, 0x11, kTcp4Block.substr(0, 11))).status ==
          ProxyStatus::kInvalid);
    CHECK(parse_proxy_header(v2(0x21, 0x21, kTcp4Block)).status == ProxyStatus::kInvalid);
    CHECK(parse_proxy_header(kSig + "\x21\x11" + be16(5000)).status == ProxyStatus::kInvalid);
    std::string bad_sig = whole;
    bad_sig[5] = 'X';
    CHECK(parse_proxy_header(bad_sig).status == ProxyStatus::kInvalid);
    CHECK(parse_proxy_header("\r\nEHLO").status == ProxyStatus::kInvalid);
}
