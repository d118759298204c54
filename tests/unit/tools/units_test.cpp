#include <doctest/doctest.h>

#include "tools/spoolctl/units.hpp"

using namespace spoold::spoolctl;

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
