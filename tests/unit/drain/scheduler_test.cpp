#include <doctest/doctest.h>

#include <algorithm>
#include <deque>
#include <set>

#include "drain/scheduler.hpp"
#include "fake_spool.hpp"

using namespace spoold;
using namespace spoold::drain;
using spoold::drain::test::FakeSpool;

namespace {

SchedulerOptions options() {
    SchedulerOptions o;
    o.weights = {8, 4, 1};
    o.max_per_recipient = 4;
    o.batch = 16;
    o.scan_budget = 256;
    return o;
}

std::string rcpt(int i) { return "user" + std::to_string(i) + "@example.com"; }

} // namespace

TEST_CASE("classes are served by weight: 8/4/1 over 1,300 picks") {
    FakeClock clock;
    FakeSpool spool(clock);
    for (int i = 0; i < 1500; ++i) {
        for (spool::ClassId k = 0; k < 3; ++k) {
            spool.add(k, {rcpt(i * 3 + k)});
        }
    }
    Scheduler s(spool, options(), clock);
    std::array<int, 3> served{};
    for (int i = 0; i < 1300; ++i) {
        const auto p = s.next();
        REQUIRE(p);
        ++served.at(p->klass);
        s.release(p->id);
        // The delivery moved it on: the spool no longer lists it as ready.
        spool.remove(p->id, [](Status) {});
    }
    CHECK(served[0] == doctest::Approx(800).epsilon(0.02));
    CHECK(served[1] == doctest::Approx(400).epsilon(0.02));
    CHECK(served[2] == doctest::Approx(100).epsilon(0.05));
}

TEST_CASE("weighted classes interleave smoothly instead of in bursts") {
    FakeClock clock;
    FakeSpool spool(clock);
    for (int i = 0; i < 100; ++i) {
        for (spool::ClassId k = 0; k < 3; ++k) {
            spool.add(k, {rcpt(i * 3 + k)});
        }
    }
    Scheduler s(spool, options(), clock);
    // Within any 13 consecutive picks, bulk gets exactly one.
    int bulk = 0;
    for (int i = 0; i < 13; ++i) {
        const auto p = s.next();
        REQUIRE(p);
        bulk += p->klass == 2 ? 1 : 0;
    }
    CHECK(bulk == 1);
}

TEST_CASE("an empty class gives its share to the others and does not hoard credit") {
    FakeClock clock;
    FakeSpool spool(clock);
    for (int i = 0; i < 200; ++i) {
        spool.add(2, {rcpt(i)});
    }
    Scheduler s(spool, options(), clock);
    for (int i = 0; i < 100; ++i) {
        const auto p = s.next();
        REQUIRE(p);
        CHECK(p->klass == 2);
    }
    // Urgent mail arrives: it is served next, and only in its 8/9 share.
    for (int i = 0; i < 50; ++i) {
        spool.add(0, {rcpt(1000 + i)});
    }
    int urgent = 0;
    for (int i = 0; i < 18; ++i) {
        const auto p = s.next();
        REQUIRE(p);
        urgent += p->klass == 0 ? 1 : 0;
    }
    CHECK(urgent >= 15);
    CHECK(urgent <= 17);
}

TEST_CASE("the strict class always goes first") {
    FakeClock clock;
    FakeSpool spool(clock);
    for (int i = 0; i < 50; ++i) {
        spool.add(0, {rcpt(i)});
        spool.add(2, {rcpt(100 + i)});
    }
    auto o = options();
    o.strict_class = 2;
    Scheduler s(spool, o, clock);
    for (int i = 0; i < 50; ++i) {
        const auto p = s.next();
        REQUIRE(p);
        CHECK(p->klass == 2);
    }
    const auto p = s.next();
    REQUIRE(p);
    CHECK(p->klass == 0);
}

TEST_CASE("messages of one class come out in arrival order") {
    FakeClock clock;
    FakeSpool spool(clock);
    std::vector<QueueId> ids;
    for (int i = 0; i < 100; ++i) {
        ids.push_back(spool.add(1, {rcpt(i)}));
    }
    Scheduler s(spool, options(), clock);
    for (const auto id : ids) {
        const auto p = s.next();
        REQUIRE(p);
        CHECK(p->id == id);
    }
    CHECK_FALSE(s.next());
}

TEST_CASE("a leased message is never handed out twice, even after a refresh") {
    FakeClock clock;
    FakeSpool spool(clock);
    for (int i = 0; i < 40; ++i) {
        spool.add(i % 3, {rcpt(i)});
    }
    Scheduler s(spool, options(), clock);
    std::set<std::uint64_t> seen;
    for (int i = 0; i < 40; ++i) {
        const auto p = s.next();
        REQUIRE(p);
        CHECK(seen.insert(p->id.value).second);
        if (i % 10 == 0) {
            clock.advance_ms(1500); // cursors restart from the front
        }
    }
    CHECK_FALSE(s.next());
    CHECK(s.leases() == 40);
    // Released but still ready (for example after session trouble): it comes back.
    const QueueId first{*seen.begin()};
    s.release(first);
    clock.advance_ms(1500);
    const auto again = s.next();
    REQUIRE(again);
    CHECK(again->id == first);
}

TEST_CASE("held messages and messages moved to another class are skipped") {
    FakeClock clock;
    FakeSpool spool(clock);
    const auto a = spool.add(1, {rcpt(1)});
    const auto b = spool.add(1, {rcpt(2)});
    const auto c = spool.add(1, {rcpt(3)});
    Scheduler s(spool, options(), clock);
    spool.set_held(a, true, [](Status) {});
    spool.set_class(b, 0, [](Status) {});
    auto p = s.next();
    REQUIRE(p);
    CHECK(p->id == b);
    CHECK(p->klass == 0);
    p = s.next();
    REQUIRE(p);
    CHECK(p->id == c);
    CHECK_FALSE(s.next());
    // spoolctl release in another process: seen within a second.
    spool.set_held(a, false, [](Status) {});
    CHECK_FALSE(s.next());
    clock.advance_ms(1000);
    p = s.next();
    REQUIRE(p);
    CHECK(p->id == a);
}

TEST_CASE("at most max_per_recipient deliveries are in flight to one recipient") {
    FakeClock clock;
    FakeSpool spool(clock);
    for (int i = 0; i < 10; ++i) {
        spool.add(1, {"Big@Example.com"});
    }
    const auto other = spool.add(1, {"small@example.com"});
    Scheduler s(spool, options(), clock);
    std::vector<QueueId> picked;
    for (int i = 0; i < 4; ++i) {
        const auto p = s.next();
        REQUIRE(p);
        picked.push_back(p->id);
    }
    CHECK(s.in_flight_to("big@example.com") == 4);
    const auto p = s.next();
    REQUIRE(p);
    CHECK(p->id == other);
    CHECK_FALSE(s.next());
    s.release(picked[0]);
    spool.remove(picked[0], [](Status) {});
    CHECK(s.next());
    CHECK_FALSE(s.next());
}

TEST_CASE("one recipient with 100,000 queued messages does not stall the others in its class") {
    FakeClock clock;
    FakeSpool spool(clock);
    for (int i = 0; i < 100'000; ++i) {
        spool.add(2, {"flood@example.com"});
    }
    std::set<std::uint64_t> others;
    for (int i = 0; i < 10; ++i) {
        others.insert(spool.add(2, {rcpt(i)}).value);
    }
    auto o = options();
    o.batch = 128;
    o.scan_budget = 1024;
    Scheduler s(spool, o, clock);
    // A delivery loop with 8 slots: each step finishes the oldest delivery, then fills
    // the free slots. The clock moves 10 ms per step so cursors refresh as in real life.
    std::deque<QueueId> in_flight;
    std::size_t deliveries = 0;
    std::size_t others_done = 0;
    while (others_done < others.size() && deliveries < 5000) {
        while (in_flight.size() < 8) {
            const auto p = s.next();
            if (!p) {
                break;
            }
            in_flight.push_back(p->id);
        }
        REQUIRE_FALSE(in_flight.empty());
        CHECK(s.in_flight_to("flood@example.com") <= 4);
        const QueueId done = in_flight.front();
        in_flight.pop_front();
        s.release(done);
        spool.remove(done, [](Status) {});
        ++deliveries;
        others_done += others.contains(done.value) ? 1 : 0;
        clock.advance_ms(10);
    }
    CHECK(others_done == others.size());
    // Served early: within the first few hundred of the 100,010 deliveries.
    CHECK(deliveries < 500);
    MESSAGE("deliveries before the 10 others were done: " << deliveries);
}

TEST_CASE("read errors mean nothing to pick now, not a crash") {
    FakeClock clock;
    FakeSpool spool(clock);
    spool.add(0, {rcpt(1)});
    Scheduler s(spool, options(), clock);
    spool.fail_reads = true;
    CHECK_FALSE(s.next());
    spool.fail_reads = false;
    clock.advance_ms(1000);
    CHECK(s.next());
}
