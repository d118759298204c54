#include <doctest/doctest.h>

#include "tools/spoolctl/units.hpp"

using namespace spoold::spoolctl;

TEST_CASE("durations accept single units, sums of units and bare seconds") {
    CHECK(parse_duration_ms("90s") == 90'000);
    CHECK(parse_duration_ms("15m") == 15 * 60'000);
    CHECK(parse_duration_ms("2h") == 2 * 3'600'000);
    CHECK(parse_duration_ms("3d") == 3 * 86'400'000LL);
    CHECK(parse_duration_ms("1w") == 7 * 86'400'000LL);
    CHECK(parse_duration_ms("1d12h") == 36 * 3'600'000LL);
    CHECK(parse_duration_ms("45") == 45'000);
    CHECK(parse_duration_ms("0") == 0);
}

TEST_CASE("durations refuse what an operator could not have meant") {
    CHECK_FALSE(parse_duration_ms(""));
    CHECK_FALSE(parse_duration_ms("h"));
    CHECK_FALSE(parse_duration_ms("-2h"));
    CHECK_FALSE(parse_duration_ms("2x"));
    CHECK_FALSE(parse_duration_ms("1h30")); // seconds or minutes? refuse
    CHECK_FALSE(parse_duration_ms("99999999999999999999d"));
    CHECK_FALSE(parse_duration_ms("9999999999999999w"));
}

TEST_CASE("sizes take binary suffixes in either case") {
    CHECK(parse_size("512") == 512U);
    CHECK(parse_size("10k") == 10240U);
    CHECK(parse_size("5M") == 5U << 20U);
    CHECK(parse_size("1G") == 1ULL << 30U);
    CHECK(parse_size("2KB") == 2048U);
    CHECK_FALSE(parse_size(""));
    CHECK_FALSE(parse_size("k"));
    CHECK_FALSE(parse_size("5Q"));
    CHECK_FALSE(parse_size("-1"));
    CHECK_FALSE(parse_size("99999999999999999G"));
}

TEST_CASE("ages use at most two units and never go negative") {
    CHECK(format_age(0) == "0s");
    CHECK(format_age(-5000) == "0s");
    CHECK(format_age(59'999) == "59s");
    CHECK(format_age(61'000) == "1m");
    CHECK(format_age(3'600'000 + 5 * 60'000) == "1h05m");
    CHECK(format_age(2 * 86'400'000LL + 4 * 3'600'000) == "2d04h");
}

TEST_CASE("sizes print short") {
    CHECK(format_size(812) == "812");
    CHECK(format_size(4300) == "4.2K");
    CHECK(format_size(13U << 20U) == "13M");
}
