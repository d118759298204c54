#include <doctest/doctest.h>

#include <set>

#include "common/queue_id.hpp"

using namespace spoold;

TEST_CASE("queue id text round-trips and sorts like the number") {
    const QueueId a{0x0123456789ABCDEFULL};
    const QueueId b{0x0123456789ABCDF0ULL};
    REQUIRE(a.text().size() == 13);
    CHECK(QueueId::parse(a.text()) == a);
    CHECK(a.text() < b.text());
    CHECK(QueueId::parse(QueueId{~0ULL}.text()) == QueueId{~0ULL});
    CHECK(QueueId::parse(QueueId{0}.text()) == QueueId{0});
}

TEST_CASE("queue id parsing refuses bad text") {
    CHECK_FALSE(QueueId::parse("").has_value());
    CHECK_FALSE(QueueId::parse("123").has_value());
    CHECK_FALSE(QueueId::parse("G000000000000").has_value()); // first digit > 15 overflows
    CHECK_FALSE(QueueId::parse("00000000000U0").has_value()); // U is not Crockford
    CHECK(QueueId::parse("0000000000o0") == std::nullopt);
}

TEST_CASE("generated ids are unique and increase even when the clock steps back") {
    FakeClock clock;
    QueueIdGenerator gen(clock, 7);
    std::set<std::uint64_t> seen;
    QueueId last{};
    for (int i = 0; i < 10000; ++i) {
        if (i == 5000) {
            clock.advance_ms(-60'000);
        }
        const QueueId id = gen.next();
        CHECK(id > last);
        last = id;
        seen.insert(id.value);
    }
    CHECK(seen.size() == 10000);
}

TEST_CASE("an id carries the time it was made") {
    FakeClock clock(1'800'000'000'123);
    QueueIdGenerator gen(clock, 0);
    CHECK(gen.next().millis() == 1'800'000'000'123);
}

TEST_CASE("raise_floor keeps later ids above an existing one") {
    FakeClock clock(1'700'000'000'000);
    QueueIdGenerator gen(clock, 0);
    const QueueId future{QueueId{(1'900'000'000'000ULL - kQueueIdEpochMs) << kQueueIdSequenceBits}};
    gen.raise_floor(future);
    CHECK(gen.next() > future);
}
