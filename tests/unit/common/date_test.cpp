#include <doctest/doctest.h>

#include "common/date.hpp"

using namespace spoold;

TEST_CASE("dates print in UTC in the three forms spoold writes") {
    const UnixMillis t = 1'795'378'200'123; // 2026-11-22 20:10:00.123 UTC
    CHECK(date::rfc5322(t) == "Sun, 22 Nov 2026 20:10:00 +0000");
    CHECK(date::asctime(t) == "Sun Nov 22 20:10:00 2026");
    CHECK(date::iso8601(t) == "2026-11-22T20:10:00.123Z");
}

TEST_CASE("a day below ten has no leading zero in RFC 5322 and a space in asctime") {
    const UnixMillis t = 1'700'000'000'000 - 9LL * 86'400'000; // 2023-11-05 22:13:20 UTC
    CHECK(date::rfc5322(t) == "Sun, 5 Nov 2023 22:13:20 +0000");
    CHECK(date::asctime(t) == "Sun Nov  5 22:13:20 2023");
    CHECK(date::iso8601(t) == "2023-11-05T22:13:20.000Z");
}

TEST_CASE("the epoch is a Thursday") {
    CHECK(date::rfc5322(0) == "Thu, 1 Jan 1970 00:00:00 +0000");
    CHECK(date::iso8601(999) == "1970-01-01T00:00:00.999Z");
}
