#include <doctest/doctest.h>

#include "drain/bulk_pacer.hpp"

using namespace spoold::drain;

TEST_CASE("a bulk job's batches shrink to the commit target and grow back at most twofold") {
    BulkPacer p(2000);
    CHECK(p.size() == kBulkFirstBatch);
    // 256 took 4 x the target: a quarter as many next time.
    p.took(256, 4 * kBulkCommitTargetMs);
    CHECK(p.size() == 64);
    // Quick again: twice as many, not all 2,000 at once.
    p.took(64, 1);
    CHECK(p.size() == 128);
    p.took(128, 0); // a clock step backwards counts as instant
    CHECK(p.size() == 256);
    for (int i = 0; i < 10; ++i) {
        p.took(p.size(), 1);
    }
    CHECK(p.size() == 2000); // never past the spool's limit
    // However slow, a batch is never empty.
    p.took(2000, 1'000'000);
    CHECK(p.size() == kBulkMinBatch);
}

TEST_CASE("a short batch that was quick leaves the size alone; a slow one shrinks it") {
    BulkPacer p(2000);
    p.took(10, 1); // only ten were due: nothing learnt about 256
    CHECK(p.size() == kBulkFirstBatch);
    p.took(
        10,
        2 * kBulkCommitTargetMs); // ten took twice the target: five next time, at least the minimum
    CHECK(p.size() == kBulkMinBatch);
}
