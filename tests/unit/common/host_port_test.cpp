#include <doctest/doctest.h>

#include "common/host_port.hpp"

using namespace spoold;

TEST_CASE("host:port splits at the last colon, [v6]:port at the bracket") {
    const auto v4 = host_port::split("127.0.0.1:6379");
    REQUIRE(v4);
    CHECK(v4->host == "127.0.0.1");
    CHECK(v4->port == "6379");
    CHECK(v4->has_port);

    const auto v6 = host_port::split("[::1]:25");
    REQUIRE(v6);
    CHECK(v6->host == "::1");
    CHECK(v6->port == "25");

    const auto bare_v6 = host_port::split("::1:25");
    REQUIRE(bare_v6);
    CHECK(bare_v6->host == "::1");
    CHECK(bare_v6->port == "25");
}

TEST_CASE("a host alone has no port, and an empty port is still a port's place") {
    const auto name = host_port::split("redis.internal");
    REQUIRE(name);
    CHECK(name->host == "redis.internal");
    CHECK_FALSE(name->has_port);

    const auto v6 = host_port::split("[::1]");
    REQUIRE(v6);
    CHECK(v6->host == "::1");
    CHECK_FALSE(v6->has_port);

    const auto empty_port = host_port::split("h:");
    REQUIRE(empty_port);
    CHECK(empty_port->has_port);
    CHECK(empty_port->port.empty());

    const auto empty_host = host_port::split(":25");
    REQUIRE(empty_host);
    CHECK(empty_host->host.empty());
}

TEST_CASE("brackets must close and be followed by :port or nothing") {
    CHECK(host_port::split("[::1").error() == host_port::SplitError::kUnclosedBracket);
    CHECK(host_port::split("[::1]25").error() == host_port::SplitError::kJunkAfterBracket);
}

TEST_CASE("a port is 1 to 65535 in decimal digits") {
    CHECK(host_port::parse_port("1") == 1);
    CHECK(host_port::parse_port("65535") == 65535);
    for (const char* bad : {"", "0", "65536", "99999999999", "2x", "-1", "+25", " 25", "0x19"}) {
        CAPTURE(bad);
        CHECK_FALSE(host_port::parse_port(bad));
    }
}
