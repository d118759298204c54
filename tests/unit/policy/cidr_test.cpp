#include <doctest/doctest.h>

#include "policy/cidr.hpp"

using namespace spoold::policy;

TEST_CASE("IP addresses parse in the forms SMTP and configs write them") {
    CHECK(parse_ip("203.0.113.5")->v4);
    CHECK_FALSE(parse_ip("2001:db8::1")->v4);
    CHECK(parse_ip("[192.0.2.1]") == parse_ip("192.0.2.1"));
    CHECK(parse_ip("IPv6:2001:db8::1") == parse_ip("2001:db8::1"));
    CHECK(parse_ip("::ffff:192.0.2.1") == parse_ip("192.0.2.1"));
    CHECK_FALSE(parse_ip("mx.example.com"));
    CHECK_FALSE(parse_ip(""));
    CHECK_FALSE(parse_ip("1.2.3.4.5"));
}

TEST_CASE("CIDR networks match addresses of their family only") {
    const auto net = parse_cidr("10.0.0.0/8").value();
    CHECK(net.contains(*parse_ip("10.1.2.3")));
    CHECK_FALSE(net.contains(*parse_ip("11.0.0.1")));
    CHECK_FALSE(net.contains(*parse_ip("2001:db8::1")));
    const auto odd = parse_cidr("192.0.2.128/25").value();
    CHECK(odd.contains(*parse_ip("192.0.2.200")));
    CHECK_FALSE(odd.contains(*parse_ip("192.0.2.100")));
    const auto v6 = parse_cidr("2001:db8::/32").value();
    CHECK(v6.contains(*parse_ip("2001:db8:ffff::1")));
    CHECK_FALSE(v6.contains(*parse_ip("2001:db9::1")));
    CHECK(parse_cidr("0.0.0.0/0")->contains(*parse_ip("8.8.8.8")));
    CHECK(parse_cidr("192.0.2.7")->contains(*parse_ip("192.0.2.7")));
    CHECK(parse_cidr("10.0.0.0/8")->contains(*parse_ip("::ffff:10.9.9.9")));
}

TEST_CASE("bad CIDR networks are refused") {
    CHECK_FALSE(parse_cidr("10.0.0.0/33"));
    CHECK_FALSE(parse_cidr("10.0.0.0/"));
    CHECK_FALSE(parse_cidr("10.0.0.1/8"));
    CHECK_FALSE(parse_cidr("10.0.0/8"));
    CHECK_FALSE(parse_cidr("2001:db8::/129"));
    CHECK_FALSE(parse_cidr("example.com/24"));
    CHECK_FALSE(parse_cidr("10.0.0.0/8x"));
}

TEST_CASE("an address or network with an embedded NUL is refused, not cut at the NUL") {
    using namespace std::string_view_literals;
    CHECK_FALSE(parse_ip("192.0.2.1\0junk"sv));
    CHECK_FALSE(parse_ip("[IPv6:::1\0]"sv));
    CHECK_FALSE(parse_cidr("192.0.2.0\0/8"sv));
}
