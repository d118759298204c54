#include <doctest/doctest.h>

#include "policy/units.hpp"

using namespace spoold::policy;
using namespace std::chrono_literals;

TEST_CASE("durations parse with every unit") {
    CHECK(parse_duration("500ms").value() == 500ms);
    CHECK(parse_duration("90s").value() == 90s);
    CHECK(parse_duration("15m").value() == 15min);
    CHECK(parse_duration("2h").value() == 2h);
    CHECK(parse_duration("30d").value() == 720h);
    CHECK(parse_duration("1w").value() == 168h);
    CHECK(parse_duration("0").value() == 0ms);
    CHECK(parse_duration("10 s").value() == 10s);
}

TEST_CASE("durations without a unit, with a bad unit or overflowing are refused") {
    CHECK_FALSE(parse_duration("30"));
    CHECK_FALSE(parse_duration("30x"));
    CHECK_FALSE(parse_duration(""));
    CHECK_FALSE(parse_duration("s"));
    CHECK_FALSE(parse_duration("-5s"));
    CHECK_FALSE(parse_duration("1.5h"));
    CHECK_FALSE(parse_duration("99999999999999999w"));
    CHECK_FALSE(parse_duration("999999999999999999999999s"));
    CHECK(parse_duration("30").error().message.find("unit") != std::string::npos);
}

TEST_CASE("sizes parse in bytes, binary and decimal units") {
    CHECK(parse_size("512").value() == 512);
    CHECK(parse_size("512B").value() == 512);
    CHECK(parse_size("10KiB").value() == 10240);
    CHECK(parse_size("50MiB").value() == 50ULL << 20U);
    CHECK(parse_size("64GiB").value() == 64ULL << 30U);
    CHECK(parse_size("2TiB").value() == 2ULL << 40U);
    CHECK(parse_size("10KB").value() == 10000);
    CHECK(parse_size("50MB").value() == 50'000'000);
    CHECK(parse_size("64GB").value() == 64'000'000'000ULL);
    CHECK(parse_size("5mib").value() == 5ULL << 20U);
}

TEST_CASE("sizes with a bad unit or overflowing are refused") {
    CHECK_FALSE(parse_size("10XB"));
    CHECK_FALSE(parse_size("MiB"));
    CHECK_FALSE(parse_size("-1"));
    CHECK_FALSE(parse_size("99999999999TiB"));
    CHECK_FALSE(parse_size("1.5GiB"));
}
