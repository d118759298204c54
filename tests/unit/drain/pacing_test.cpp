#include <doctest/doctest.h>

#include "drain/pacing.hpp"

using namespace spoold;
using namespace spoold::drain;

namespace {

// One healthy delivery of `latency_ms` that started now.
void healthy(ConcurrencyLimit& c, FakeClock& clock, std::int64_t latency_ms) {
    const UnixMillis start = clock.now_ms();
    clock.advance_ms(latency_ms);
    c.on_success(start);
}

} // namespace

TEST_CASE("the concurrency limit starts low and grows additively while deliveries are healthy") {
    FakeClock clock;
    ConcurrencyLimit c({2, 16}, clock);
    CHECK(c.limit() == 2);
    // +1/limit per success, i.e. about +1 per limit's worth: 2 -> 2.5 -> 2.9 -> 3.24.
    healthy(c, clock, 10);
    healthy(c, clock, 10);
    CHECK(c.limit() == 2);
    healthy(c, clock, 10);
    CHECK(c.limit() == 3);
    for (int i = 0; i < 3; ++i) {
        healthy(c, clock, 10);
    }
    CHECK(c.limit() == 4);
    for (int i = 0; i < 1000; ++i) {
        healthy(c, clock, 10);
    }
    CHECK(c.limit() == 16); // never above max_concurrency
}

TEST_CASE("trouble halves the limit once per round trip, never below one") {
    FakeClock clock;
    ConcurrencyLimit c({2, 16}, clock);
    for (int i = 0; i < 1000; ++i) {
        healthy(c, clock, 10);
    }
    REQUIRE(c.limit() == 16);
    // Sixteen deliveries in flight all fail at once: one halving, not sixteen.
    const UnixMillis burst_start = clock.now_ms();
    clock.advance_ms(100);
    for (int i = 0; i < 16; ++i) {
        c.on_trouble(burst_start);
    }
    CHECK(c.limit() == 8);
    // A delivery started after that decrease counts again.
    const UnixMillis later = clock.now_ms();
    clock.advance_ms(10);
    c.on_trouble(later);
    CHECK(c.limit() == 4);
    for (int i = 0; i < 10; ++i) {
        const UnixMillis s = clock.now_ms();
        clock.advance_ms(1);
        c.on_trouble(s);
    }
    CHECK(c.limit() == 1);
}

TEST_CASE("a latency blow-up shrinks the limit but normal latency jitter does not") {
    FakeClock clock;
    ConcurrencyLimit c({4, 16}, clock);
    for (int i = 0; i < 200; ++i) {
        healthy(c, clock, 20);
    }
    REQUIRE(c.limit() == 16);
    CHECK(c.best_latency_ms() == 20);
    healthy(c, clock, 60); // within max(4 x best, best + slack)
    CHECK(c.limit() == 16);
    healthy(c, clock, 500);
    CHECK(c.limit() == 12);
}

TEST_CASE("restart goes back to slow start and forgets the old latency") {
    FakeClock clock;
    ConcurrencyLimit c({2, 16}, clock);
    for (int i = 0; i < 500; ++i) {
        healthy(c, clock, 5);
    }
    REQUIRE(c.limit() == 16);
    c.restart();
    CHECK(c.limit() == 2);
    CHECK(c.best_latency_ms() == 0);
    // A delivery launched before the restart does not shrink the fresh limit.
    c.on_trouble(clock.now_ms() - 1);
    CHECK(c.limit() == 2);
}

TEST_CASE("reconfigure caps the limit at the new maximum") {
    FakeClock clock;
    ConcurrencyLimit c({2, 16}, clock);
    for (int i = 0; i < 500; ++i) {
        healthy(c, clock, 5);
    }
    c.reconfigure({2, 4});
    CHECK(c.limit() == 4);
}

TEST_CASE("the rate limiter allows max_rate messages per second after a small burst") {
    FakeClock clock;
    RateLimiter r(100, clock);
    int granted = 0;
    while (r.try_acquire()) {
        ++granted;
    }
    CHECK(granted == 10); // a tenth of a second's worth
    CHECK(r.next_available_ms() == clock.now_ms() + 10);
    // Over ten simulated seconds, polling every millisecond: 100/s.
    granted = 0;
    for (int ms = 0; ms < 10'000; ++ms) {
        clock.advance_ms(1);
        while (r.try_acquire()) {
            ++granted;
        }
    }
    CHECK(granted >= 999);
    CHECK(granted <= 1001);
}

TEST_CASE("a zero rate is unlimited, and slow rates still grant one token at a time") {
    FakeClock clock;
    RateLimiter unlimited(0, clock);
    for (int i = 0; i < 100'000; ++i) {
        REQUIRE(unlimited.try_acquire());
    }
    RateLimiter slow(0.5, clock);
    CHECK(slow.try_acquire());
    CHECK_FALSE(slow.try_acquire());
    CHECK(slow.next_available_ms() == clock.now_ms() + 2000);
    clock.advance_ms(2000);
    CHECK(slow.try_acquire());
    slow.set_rate(0);
    CHECK(slow.try_acquire());
}
