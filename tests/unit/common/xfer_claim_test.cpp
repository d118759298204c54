#include <doctest/doctest.h>

#include "common/xfer_claim.hpp"

using namespace spoold;

TEST_CASE("an xfer claim survives its own encoding") {
    const XferClaim claim{"bulk", 1'700'000'000'123, 1'700'086'400'123};
    CHECK(format_xfer_claim(claim) == "bulk,1700000000123,1700086400123");
    CHECK(parse_xfer_claim(format_xfer_claim(claim)) == claim);
    CHECK(parse_xfer_claim("urgent.v2,0,0") == XferClaim{"urgent.v2", 0, 0});
}

TEST_CASE("a malformed xfer claim is no claim") {
    for (const char* bad : {"", "bulk", "bulk,1", ",1,2", "bulk,1,2,3", "bulk,-1,2", "bulk,1,x",
                            "bu lk,1,2", "bulk,,2", "bulk,1,", "bulk,99999999999999999999,0"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_xfer_claim(bad).has_value());
    }
}
