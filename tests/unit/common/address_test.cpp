#include <doctest/doctest.h>

#include "common/address.hpp"

using namespace spoold::address;

namespace {

std::string parsed(std::string_view text, PathOptions options = {}) {
    const auto p = parse_path(text, options);
    return p ? p->address : std::string("ERR");
}

} // namespace

TEST_CASE("plain, quoted and literal mailboxes parse; the brackets and route are dropped") {
    CHECK(parsed("<user@example.com>") == "user@example.com");
    CHECK(parsed("<first.last+tag@sub.example.com>") == "first.last+tag@sub.example.com");
    CHECK(parsed("<\"john doe\"@example.com>") == "\"john doe\"@example.com");
    CHECK(parsed("<\"a>b@c\"@example.com>") == "\"a>b@c\"@example.com");
    CHECK(parsed("<\"quoted\\\"quote\"@example.com>") == "\"quoted\\\"quote\"@example.com");
    CHECK(parsed("<user@[192.0.2.1]>") == "user@[192.0.2.1]");
    CHECK(parsed("<user@[IPv6:2001:db8::1]>") == "user@[IPv6:2001:db8::1]");
    CHECK(parsed("<@relay.example,@b.example:user@example.com>") == "user@example.com");
}

TEST_CASE("malformed paths are syntax errors") {
    for (const char* bad :
         {"user@example.com", "<user@example.com", "<user>", "<@example.com>", "<user@>",
          "<.user@example.com>", "<us..er@example.com>", "<user.@example.com>",
          "<user@-example.com>", "<user@example-.com>", "<user@exa mple.com>", "<user@[300.1.1.1]>",
          "<user@[IPv6:zz::1]>", "<user@example..com>", "<us er@example.com>",
          "<\"unterminated@example.com>", "<user@example.com>junk", "<>"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_path(bad, {}).has_value());
    }
}

TEST_CASE("the null path needs allow_null, postmaster needs allow_postmaster") {
    const auto p = parse_path("<> SIZE=10", PathOptions{.allow_null = true});
    REQUIRE(p.has_value());
    CHECK(p->address.empty());
    CHECK(p->rest == "SIZE=10");
    CHECK(parsed("<Postmaster>", PathOptions{.allow_postmaster = true}) == "Postmaster");
    CHECK(parsed("<Postmaster>") == "ERR");
}

TEST_CASE("UTF-8 addresses need SMTPUTF8 and are reported as such") {
    const auto no = parse_path("<j\xc3\xb6rg@b\xc3\xbc"
                               "cher.example>",
                               {});
    REQUIRE_FALSE(no.has_value());
    CHECK(no.error() == PathError::kNonAscii);
    const auto yes = parse_path("<j\xc3\xb6rg@b\xc3\xbc"
                                "cher.example>",
                                PathOptions{.allow_utf8 = true});
    REQUIRE(yes.has_value());
    CHECK(yes->non_ascii);
    // Broken UTF-8 is garbage, not "non-ASCII".
    CHECK(parse_path("<j\xc3rg@example.com>", PathOptions{.allow_utf8 = true}).error() ==
          PathError::kSyntax);
    CHECK(parse_path("<j\xc0\xafrg@example.com>", PathOptions{.allow_utf8 = true}).error() ==
          PathError::kSyntax);
}

TEST_CASE("paths over 256 octets are too long") {
    const std::string local(300, 'a');
    CHECK(parse_path("<" + local + "@example.com>", {}).error() == PathError::kTooLong);
}

TEST_CASE("ESMTP parameters: keywords upper-cased, values kept, syntax checked") {
    const auto p = parse_esmtp_params("size=100 BODY=8BITMIME SMTPUTF8", false);
    REQUIRE(p.has_value());
    REQUIRE(p->size() == 3);
    CHECK((*p)[0].keyword == "SIZE");
    CHECK((*p)[0].value == "100");
    CHECK((*p)[2].keyword == "SMTPUTF8");
    CHECK_FALSE((*p)[2].has_value);
    CHECK_FALSE(parse_esmtp_params("SIZE=", false).has_value());
    CHECK_FALSE(parse_esmtp_params("-X=1", false).has_value());
    CHECK_FALSE(parse_esmtp_params("X=a=b", false).has_value());
    CHECK_FALSE(parse_esmtp_params("X=\xc3\xa4", false).has_value());
    CHECK(parse_esmtp_params("X=\xc3\xa4", true).has_value());
}

TEST_CASE("xtext round-trips and rejects bad escapes") {
    CHECK(decode_xtext("a+2Bb+3Dc") == std::optional<std::string>("a+b=c"));
    CHECK(encode_xtext("a+b=c d") == "a+2Bb+3Dc+20d");
    CHECK(decode_xtext(encode_xtext("x\x01y")) == std::optional<std::string>("x\x01y"));
    CHECK_FALSE(decode_xtext("a+2").has_value());
    CHECK_FALSE(decode_xtext("a+2b").has_value()); // hex must be upper case
    CHECK_FALSE(decode_xtext("a=b").has_value());
    CHECK_FALSE(decode_xtext("a b").has_value());
}

TEST_CASE("NOTIFY and ORCPT for a next hop read back as they were given") {
    CHECK(format_notify(kNotifyNever) == "NEVER");
    CHECK(format_notify(kNotifySuccess) == "SUCCESS");
    CHECK(format_notify(kNotifyDelay | kNotifySuccess | kNotifyFailure) == "SUCCESS,FAILURE,DELAY");
    for (const std::uint8_t bits : {1, 2, 4, 6, 8, 10, 12, 14}) {
        CHECK(parse_notify(format_notify(bits)) == bits);
    }
    // Stored decoded; '+', '=' and spaces go out as xtext again.
    CHECK(format_orcpt("rfc822;user+tag=x@example.com") == "rfc822;user+2Btag+3Dx@example.com");
    CHECK(parse_orcpt(format_orcpt("rfc822;user+tag=x@example.com"), false) ==
          "rfc822;user+tag=x@example.com");
    CHECK(format_orcpt("bare@example.com") == "rfc822;bare@example.com");
}

TEST_CASE("NOTIFY, ORCPT and ENVID values") {
    CHECK(parse_notify("NEVER") == std::optional<std::uint8_t>(kNotifyNever));
    CHECK(parse_notify("success,Failure,DELAY") ==
          std::optional<std::uint8_t>(kNotifySuccess | kNotifyFailure | kNotifyDelay));
    CHECK_FALSE(parse_notify("NEVER,SUCCESS").has_value());
    CHECK_FALSE(parse_notify("SUCCESS,SUCCESS").has_value());
    CHECK_FALSE(parse_notify("SUCCESS,").has_value());
    CHECK_FALSE(parse_notify("SOMETIMES").has_value());
    CHECK(parse_orcpt("rfc822;user+2Btag@example.com", false) ==
          std::optional<std::string>("rfc822;user+tag@example.com"));
    CHECK_FALSE(parse_orcpt("rfc822", false).has_value());
    CHECK_FALSE(parse_orcpt(";x@y", false).has_value());
    CHECK_FALSE(parse_orcpt("rfc822;a+0Ab", false).has_value());
    CHECK(parse_orcpt("utf-8;j\xc3\xb6rg@example.com", true).has_value());
    CHECK_FALSE(parse_orcpt("rfc822;j\xc3\xb6rg@example.com", true).has_value());
    CHECK(parse_envid("QQ314159") == std::optional<std::string>("QQ314159"));
    CHECK_FALSE(parse_envid(std::string(101, 'a')).has_value());
}

TEST_CASE("domains and UTF-8 validity") {
    CHECK(is_valid_domain("mx1.example.com", false));
    CHECK(is_valid_domain("localhost", false));
    CHECK_FALSE(is_valid_domain("", false));
    CHECK_FALSE(is_valid_domain("a_b.example", false));
    CHECK(is_valid_utf8("plain"));
    CHECK(is_valid_utf8("\xf0\x9f\x93\xa7"));
    CHECK_FALSE(is_valid_utf8("\xed\xa0\x80")); // surrogate
    CHECK_FALSE(is_valid_utf8("\xe0\x80\xaf")); // overlong
    CHECK(is_valid_address_literal("[tag:anything]"));
    CHECK(iequals("MaIl", "MAIL"));
}

TEST_CASE("an IPv6 literal with a NUL or other junk is refused (fuzz finding)") {
    // inet_pton stopped at the NUL, so everything after it was accepted into the address.
    using namespace std::string_view_literals;
    for (const auto bad :
         {"<user@[IPv6:2001:db8::\0"
          "1]>"sv,
          "<user@[IPv6:::1\0junk]>"sv, "<user@[IPv6:::1 ]>"sv, "<user@[IPv6:::1\r\n]>"sv}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_path(bad, {}).has_value());
        CHECK_FALSE(is_valid_address_literal(bad.substr(6, bad.size() - 7)));
    }
    CHECK(is_valid_address_literal("[IPv6:2001:DB8::192.0.2.1]"));
    CHECK(parsed("<user@[IPv6:::ffff:192.0.2.1]>") == "user@[IPv6:::ffff:192.0.2.1]");
}
