// libFuzzer target: the RFC 5321 path, ESMTP parameter, xtext and DSN value parsers of
// common/address.hpp on arbitrary text. Input: one options byte, then the text.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/address.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace spoold;
using spoold::fuzz::check;

namespace {

bool is_ascii(std::string_view s) {
    for (const char c : s) {
        if (static_cast<unsigned char>(c) >= 0x80) {
            return false;
        }
    }
    return true;
}

// RFC 3629, written out as the table of its section 4, to compare is_valid_utf8 with.
bool reference_utf8(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t n = s.size();
    std::size_t i = 0;
    const auto in = [&](std::size_t k, unsigned lo, unsigned hi) {
        return i + k < n && p[i + k] >= lo && p[i + k] <= hi;
    };
    while (i < n) {
        const unsigned c = p[i];
        if (c <= 0x7F) {
            i += 1;
        } else if (c >= 0xC2 && c <= 0xDF && in(1, 0x80, 0xBF)) {
            i += 2;
        } else if (c == 0xE0 && in(1, 0xA0, 0xBF) && in(2, 0x80, 0xBF)) {
            i += 3;
        } else if (((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) && in(1, 0x80, 0xBF) &&
                   in(2, 0x80, 0xBF)) {
            i += 3;
        } else if (c == 0xED && in(1, 0x80, 0x9F) && in(2, 0x80, 0xBF)) {
            i += 3;
        } else if (c == 0xF0 && in(1, 0x90, 0xBF) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF)) {
            i += 4;
        } else if (c >= 0xF1 && c <= 0xF3 && in(1, 0x80, 0xBF) && in(2, 0x80, 0xBF) &&
                   in(3, 0x80, 0xBF)) {
            i += 4;
        } else if (c == 0xF4 && in(1, 0x80, 0x8F) && in(2, 0x80, 0xBF) && in(3, 0x80, 0xBF)) {
            i += 4;
        } else {
            return false;
        }
    }
    return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) {
        return 0;
    }
    const std::uint8_t options_byte = data[0];
    const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    address::PathOptions options;
    options.allow_null = (options_byte & 1U) != 0;
    options.allow_utf8 = (options_byte & 2U) != 0;
    options.allow_postmaster = (options_byte & 4U) != 0;

    check(address::is_valid_utf8(text) == reference_utf8(text),
          "is_valid_utf8 disagrees with RFC 3629");

    if (auto path = address::parse_path(text, options)) {
        const auto& a = path->address;
        check(a.size() <= address::kMaxPathLength, "address longer than a path may be", a);
        // RFC 5321 qtextSMTP and quoted-pairSMTP exclude controls even inside quotes.
        check(a.find_first_of(std::string_view("\0\r\n", 3)) == std::string::npos,
              "control in an address", a);
        // Outside quotes and address literals (whose RFC 5321 dcontent allows '<' and '>')
        // no blank or angle bracket.
        // dcontent excludes '[', so a literal domain starts at the last one.
        const auto bracket = a.ends_with(']') ? a.rfind('[') : std::string::npos;
        const auto at = bracket != std::string::npos && bracket > 0 ? bracket - 1 : a.rfind('@');
        const std::string_view local =
            std::string_view(a).substr(0, at == std::string::npos ? a.size() : at);
        const std::string_view domain =
            at == std::string::npos ? std::string_view() : std::string_view(a).substr(at + 1);
        if (local.find('"') == std::string::npos) {
            check(local.find_first_of(" <>") == std::string::npos,
                  "blank or bracket in a local part", a);
        }
        if (!domain.starts_with('[')) {
            check(domain.find_first_of(" <>") == std::string::npos, "blank or bracket in a domain",
                  a);
        }
        // rest is a view into the input, after the path.
        check(path->rest.data() >= text.data() &&
                  path->rest.data() + path->rest.size() == text.data() + text.size(),
              "rest is not the tail of the input");
        if (a.empty()) {
            check(options.allow_null, "null path accepted where it is not allowed", text);
        } else if (!(options.allow_postmaster && address::iequals(a, "postmaster"))) {
            check(address::is_valid_mailbox(a, options.allow_utf8),
                  "parsed path is not a valid mailbox", a);
        }
        check(path->non_ascii == !is_ascii(a), "non_ascii does not describe the address", a);
        if (!options.allow_utf8) {
            check(is_ascii(a), "UTF-8 address accepted without SMTPUTF8", a);
        } else {
            check(address::is_valid_utf8(a), "ill-formed UTF-8 in an accepted address", a);
        }
        if (auto params = address::parse_esmtp_params(path->rest, options.allow_utf8)) {
            for (const auto& p : *params) {
                check(!p.keyword.empty(), "empty ESMTP keyword");
                for (const char c : p.keyword) {
                    check(!(c >= 'a' && c <= 'z'), "ESMTP keyword not upper-cased", p.keyword);
                }
                check(p.has_value || p.value.empty(), "a value without has_value");
            }
        }
    } else {
        (void)address::parse_esmtp_params(text, options.allow_utf8);
    }

    // xtext: encoding then decoding gives back any byte string; decoded text re-encodes
    // to something that decodes to the same.
    const std::string encoded = address::encode_xtext(text);
    const auto back = address::decode_xtext(encoded);
    check(back && *back == text, "decode_xtext(encode_xtext(x)) != x", encoded);
    if (const auto decoded = address::decode_xtext(text)) {
        const auto again = address::decode_xtext(address::encode_xtext(*decoded));
        check(again && *again == *decoded, "xtext round trip of a decoded value");
    }

    if (const auto notify = address::parse_notify(text)) {
        const std::uint8_t all = address::kNotifyNever | address::kNotifySuccess |
                                 address::kNotifyFailure | address::kNotifyDelay;
        check(*notify != 0 && (*notify & ~all) == 0, "NOTIFY bits out of range");
        check(!((*notify & address::kNotifyNever) != 0 && *notify != address::kNotifyNever),
              "NEVER combined with other NOTIFY values");
    }
    if (const auto orcpt = address::parse_orcpt(text, options.allow_utf8)) {
        check(orcpt->find(';') != std::string::npos, "ORCPT without its addr-type", *orcpt);
        if (!options.allow_utf8) {
            check(is_ascii(*orcpt), "UTF-8 ORCPT without SMTPUTF8", *orcpt);
        }
    }
    if (const auto envid = address::parse_envid(text)) {
        check(envid->size() <= address::kMaxEnvidLength, "ENVID over its length limit", *envid);
        for (const char c : *envid) {
            check(c >= 32 && c < 127, "ENVID with a non-printable character", *envid);
        }
    }
    (void)address::is_valid_domain(text, options.allow_utf8);
    (void)address::is_valid_address_literal(text);
    check(address::iequals(text, text), "iequals is not reflexive");
    return 0;
}
