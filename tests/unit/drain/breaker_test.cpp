#include <doctest/doctest.h>

#include "drain/breaker.hpp"

using namespace spoold;
using namespace spoold::drain;
using namespace std::chrono_literals;

namespace {

BreakerOptions options() {
    BreakerOptions o;
    o.failures = 3;
    o.min_backoff = 1s;
    o.max_backoff = 60s;
    o.half_open_successes = 2;
    o.half_open_concurrency = 1;
    return o;
}

// Fails probes until the breaker is due again; returns the delay it chose.
std::int64_t fail_probe(Breaker& b, FakeClock& clock) {
    clock.set_ms(b.next_probe_ms());
    REQUIRE(b.probe_due());
    b.on_probe_started();
    CHECK_FALSE(b.probe_due());
    b.on_probe_result(false);
    return b.next_probe_ms() - clock.now_ms();
}

} // namespace

TEST_CASE("the breaker opens after the configured number of consecutive trouble signals") {
    FakeClock clock;
    Breaker b("lmtp", options(), clock, 1);
    CHECK(b.state() == BreakerState::kClosed);
    CHECK(b.admits());
    b.on_trouble();
    b.on_trouble();
    b.on_success(); // an answer in between resets the count
    b.on_trouble();
    b.on_trouble();
    CHECK(b.state() == BreakerState::kClosed);
    b.on_trouble();
    CHECK(b.state() == BreakerState::kOpen);
    CHECK_FALSE(b.admits());
    CHECK(b.concurrency_cap() == 0);
}

TEST_CASE("an open breaker probes with exponential backoff inside the configured bounds") {
    FakeClock clock;
    Breaker b("lmtp", options(), clock, 42);
    for (int i = 0; i < 3; ++i) {
        b.on_trouble();
    }
    REQUIRE(b.state() == BreakerState::kOpen);
    const auto first = b.next_probe_ms() - clock.now_ms();
    CHECK(first >= 500);
    CHECK(first <= 1000);
    CHECK_FALSE(b.probe_due());
    clock.advance_ms(first - 1);
    CHECK_FALSE(b.probe_due());
    std::int64_t previous_step = 1000;
    for (int i = 0; i < 20; ++i) {
        const auto delay = fail_probe(b, clock);
        const std::int64_t step = std::min<std::int64_t>(previous_step * 2, 60'000);
        CHECK(delay >= std::max<std::int64_t>(1000, step / 2));
        CHECK(delay <= step);
        CHECK(delay <= 60'000);
        previous_step = step;
        CHECK(b.state() == BreakerState::kOpen);
    }
}

TEST_CASE("late results while open neither close it nor push the next probe out") {
    FakeClock clock;
    Breaker b("lmtp", options(), clock, 7);
    for (int i = 0; i < 3; ++i) {
        b.on_trouble();
    }
    const auto next = b.next_probe_ms();
    b.on_trouble();
    b.on_success();
    CHECK(b.state() == BreakerState::kOpen);
    CHECK(b.next_probe_ms() == next);
}

TEST_CASE("a good probe half-opens, successes close it and trouble re-opens it with more backoff") {
    FakeClock clock;
    Breaker b("lmtp", options(), clock, 3);
    for (int i = 0; i < 3; ++i) {
        b.on_trouble();
    }
    clock.set_ms(b.next_probe_ms());
    b.on_probe_started();
    b.on_probe_result(true);
    CHECK(b.state() == BreakerState::kHalfOpen);
    CHECK(b.admits());
    CHECK(b.concurrency_cap() == 1);

    b.on_trouble(); // one trouble signal is enough in half-open
    CHECK(b.state() == BreakerState::kOpen);
    const auto delay = b.next_probe_ms() - clock.now_ms();
    CHECK(delay >= 1000); // step 2 s with equal jitter: never below 1 s
    CHECK(delay <= 2000);

    clock.set_ms(b.next_probe_ms());
    b.on_probe_started();
    b.on_probe_result(true);
    REQUIRE(b.state() == BreakerState::kHalfOpen);
    b.on_success();
    CHECK(b.state() == BreakerState::kHalfOpen);
    b.on_success();
    CHECK(b.state() == BreakerState::kClosed);
    CHECK(b.probe_failures() == 0);

    // After closing, the failure count starts over.
    b.on_trouble();
    b.on_trouble();
    CHECK(b.state() == BreakerState::kClosed);
}

TEST_CASE("per-recipient trouble while other recipients are answered never opens the breaker") {
    FakeClock clock;
    Breaker b("lmtp", options(), clock, 1);
    // A dead shard: 3 in 10 mailboxes answer 451 4.3.0, far more in a row than `failures`.
    for (int round = 0; round < 50; ++round) {
        for (int i = 0; i < 5; ++i) {
            b.on_recipients(0, 1, 0);
        }
        for (int i = 0; i < 12; ++i) {
            b.on_success();
            b.on_recipients(1, 0, 0);
        }
        clock.advance_ms(1000);
        REQUIRE(b.state() == BreakerState::kClosed);
    }
    CHECK(b.failure_ratio() < options().failure_ratio);
}

TEST_CASE("a store that fails every mailbox opens the breaker by its failure ratio") {
    FakeClock clock;
    Breaker b("lmtp", options(), clock, 1);
    const std::uint32_t samples = options().window_samples;
    for (std::uint32_t i = 0; i + 1 < samples; ++i) {
        b.on_recipients(0, 1, 0);
    }
    CHECK(b.state() == BreakerState::kClosed); // too few to judge
    // A whole window later those have aged out: the count starts again.
    clock.advance_ms(options().window.count());
    for (std::uint32_t i = 0; i + 1 < samples; ++i) {
        b.on_recipients(0, 1, 0);
    }
    CHECK(b.state() == BreakerState::kClosed);
    b.on_recipients(0, 1, 0);
    CHECK(b.state() == BreakerState::kOpen);
    // Judged afresh after the outage: the probe half-opens it, answers close it.
    clock.set_ms(b.next_probe_ms());
    b.on_probe_started();
    b.on_probe_result(true);
    REQUIRE(b.state() == BreakerState::kHalfOpen);
    CHECK(b.failure_ratio() == 0.0);
    // Its trial meets troubled mailboxes only (the oldest mail is a dead shard's): theirs.
    for (std::uint32_t i = 0; i < 2 * samples; ++i) {
        b.on_recipients(0, 1, 0);
    }
    CHECK(b.state() == BreakerState::kHalfOpen);
    b.on_success();
    b.on_success();
    CHECK(b.state() == BreakerState::kClosed);
}

TEST_CASE("the failure ratio counts the answered recipients of the same window") {
    FakeClock clock;
    Breaker b("lmtp", options(), clock, 1);
    // 8 of 10 troubled reaches the default ratio of 0.8; 7 of 10 does not.
    b.on_recipients(3, 0, 0);
    for (int i = 0; i < 7; ++i) {
        b.on_recipients(0, 1, 0);
    }
    CHECK(b.state() == BreakerState::kClosed);
    CHECK(b.failure_ratio() == doctest::Approx(0.7));
    b.on_recipients(0, 1, 0); // 8 of 11
    CHECK(b.state() == BreakerState::kClosed);
    b.on_recipients(0, 1, 0); // 9 of 12 = 0.75
    CHECK(b.state() == BreakerState::kClosed);
    b.on_recipients(0, 3, 0); // 12 of 15 = 0.8
    CHECK(b.state() == BreakerState::kOpen);
}

TEST_CASE("trouble a known group handles counts neither for nor against the store") {
    FakeClock clock;
    Breaker b("lmtp", options(), clock, 1);
    const std::uint32_t samples = options().window_samples;
    // The oldest mail all a dead shard's: its first refusal starts the group; the rest of the
    // first wave, the dead mailboxes met later and every refused probe are the group's.
    b.on_recipients(0, 1, 0);
    for (std::uint32_t i = 0; i < 4 * samples; ++i) {
        b.on_recipients(0, 1, 1);
        b.on_recipients(0, 3, 3);
    }
    CHECK(b.state() == BreakerState::kClosed);
    // Trouble no group handles still counts: a store failing mailbox after mailbox in ways not
    // seen before opens it once the window holds enough of them.
    for (std::uint32_t i = 0; i + 2 < samples; ++i) {
        b.on_recipients(0, 2, 1);
    }
    CHECK(b.state() == BreakerState::kClosed);
    b.on_recipients(0, 2, 1);
    CHECK(b.state() == BreakerState::kOpen);
}
