#include <doctest/doctest.h>

#include <algorithm>
#include <deque>
#include <set>

#include "drain/scheduler.hpp"
#include "tests/support/temp_spool.hpp"

using namespace spoold;
using namespace spoold::drain;
using spoold::test::FaultySpool;
using spoold::test::TempSpool;
using spoold::test::TestMessage;

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
    TempSpool spool(clock);
    std::vector<TestMessage> messages;
    for (int i = 0; i < 1500; ++i) {
        for (spool::ClassId k = 0; k < 3; ++k) {
            messages.push_back(TestMessage{k, {rcpt(i * 3 + k)}});
        }
    }
    spool.add_all(std::move(messages));
    Scheduler s(spool.get(), options(), clock);
    std::array<int, 3> served{};
    for (int i = 0; i < 1300; ++i) {
        const auto p = s.next();
        REQUIRE(p);
        ++served.at(p->klass);
        s.release(p->id);
        // The delivery moved it on: the spool no longer lists it as ready. Not waited for:
        // the clock stands still, so the cursors never go back over it.
        spool->remove(p->id, [](Status) {});
    }
    CHECK(served[0] == doctest::Approx(800).epsilon(0.02));
    CHECK(served[1] == doctest::Approx(400).epsilon(0.02));
    CHECK(served[2] == doctest::Approx(100).epsilon(0.05));
}

TEST_CASE("weighted classes interleave smoothly instead of in bursts") {
    FakeClock clock;
    TempSpool spool(clock);
    std::vector<TestMessage> messages;
    for (int i = 0; i < 100; ++i) {
        for (spool::ClassId k = 0; k < 3; ++k) {
            messages.push_back(TestMessage{k, {rcpt(i * 3 + k)}});
        }
    }
    spool.add_all(std::move(messages));
    Scheduler s(spool.get(), options(), clock);
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
    TempSpool spool(clock);
    std::vector<TestMessage> bulk;
    for (int i = 0; i < 200; ++i) {
        bulk.push_back(TestMessage{2, {rcpt(i)}});
    }
    spool.add_all(std::move(bulk));
    Scheduler s(spool.get(), options(), clock);
    for (int i = 0; i < 100; ++i) {
        const auto p = s.next();
        REQUIRE(p);
        CHECK(p->klass == 2);
    }
    // Urgent mail arrives: it is served next, and only in its 8/9 share.
    std::vector<TestMessage> urgent_mail;
    for (int i = 0; i < 50; ++i) {
        urgent_mail.push_back(TestMessage{0, {rcpt(1000 + i)}});
    }
    spool.add_all(std::move(urgent_mail));
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
    TempSpool spool(clock);
    std::vector<TestMessage> messages;
    for (int i = 0; i < 50; ++i) {
        messages.push_back(TestMessage{0, {rcpt(i)}});
        messages.push_back(TestMessage{2, {rcpt(100 + i)}});
    }
    spool.add_all(std::move(messages));
    auto o = options();
    o.strict_class = 2;
    Scheduler s(spool.get(), o, clock);
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
    TempSpool spool(clock);
    std::vector<TestMessage> messages;
    for (int i = 0; i < 100; ++i) {
        messages.push_back(TestMessage{1, {rcpt(i)}});
    }
    const std::vector<QueueId> ids = spool.add_all(std::move(messages));
    Scheduler s(spool.get(), options(), clock);
    for (const auto id : ids) {
        const auto p = s.next();
        REQUIRE(p);
        CHECK(p->id == id);
    }
    CHECK_FALSE(s.next());
}

TEST_CASE("a leased message is never handed out twice, even after a refresh") {
    FakeClock clock;
    TempSpool spool(clock);
    std::vector<TestMessage> messages;
    for (int i = 0; i < 40; ++i) {
        messages.push_back(TestMessage{static_cast<spool::ClassId>(i % 3), {rcpt(i)}});
    }
    spool.add_all(std::move(messages));
    Scheduler s(spool.get(), options(), clock);
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
    TempSpool spool(clock);
    const auto a = spool.add(1, {rcpt(1)});
    const auto b = spool.add(1, {rcpt(2)});
    const auto c = spool.add(1, {rcpt(3)});
    Scheduler s(spool.get(), options(), clock);
    spool.set_held(a, true);
    spool.set_class(b, 0);
    auto p = s.next();
    REQUIRE(p);
    CHECK(p->id == b);
    CHECK(p->klass == 0);
    p = s.next();
    REQUIRE(p);
    CHECK(p->id == c);
    CHECK_FALSE(s.next());
    // spoolctl release in another process: seen within a second.
    spool.set_held(a, false);
    CHECK_FALSE(s.next());
    clock.advance_ms(1000);
    p = s.next();
    REQUIRE(p);
    CHECK(p->id == a);
}

TEST_CASE("at most max_per_recipient deliveries are in flight to one recipient") {
    FakeClock clock;
    TempSpool spool(clock);
    spool.add_all(std::vector<TestMessage>(10, TestMessage{1, {"Big@Example.com"}}));
    const auto other = spool.add(1, {"small@example.com"});
    Scheduler s(spool.get(), options(), clock);
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
    spool.remove(picked[0]);
    CHECK(s.next());
    CHECK_FALSE(s.next());
}

TEST_CASE("one recipient with 100,000 queued messages does not stall the others in its class") {
    FakeClock clock;
    TempSpool spool(clock);
    spool.add_all(std::vector<TestMessage>(100'000, TestMessage{2, {"flood@example.com"}}));
    std::vector<TestMessage> later;
    for (int i = 0; i < 10; ++i) {
        later.push_back(TestMessage{2, {rcpt(i)}});
    }
    std::set<std::uint64_t> others;
    for (const auto id : spool.add_all(std::move(later))) {
        others.insert(id.value);
    }
    auto o = options();
    o.batch = 128;
    o.scan_budget = 1024;
    Scheduler s(spool.get(), o, clock);
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
        spool.remove(done);
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
    TempSpool real(clock);
    real.add(0, {rcpt(1)});
    FaultySpool spool(real.get());
    Scheduler s(spool, options(), clock);
    spool.fail_reads_from(0);
    CHECK_FALSE(s.next());
    spool.heal();
    clock.advance_ms(1000);
    CHECK(s.next());
}

TEST_CASE("a down store's backlog ahead of a healthy store's mail costs a pick nothing") {
    FakeClock clock;
    TempSpool real(clock);
    constexpr int kBacklog = 20'000;
    std::vector<TestMessage> backlog;
    for (int i = 0; i < kBacklog; ++i) {
        backlog.push_back(TestMessage{1, {"u" + std::to_string(i) + "@down.example"}});
    }
    const auto down = real.add_all(std::move(backlog));
    const auto fresh = real.add(1, {"a@up.example"});
    FaultySpool spool(real.get());
    bool down_has_room = false;
    const DomainRoom room = [&](std::string_view domain) {
        return domain != "down.example" || down_has_room;
    };
    const auto o = options();
    Scheduler s(spool, o, clock);
    // The pick reads the ready epoch, the newest id and each class's domains (a few reads
    // per class), then one batch of the up lane: a bound from the options, not the backlog.
    const std::size_t bound = 4 * spool::kMaxClasses + o.batch;
    auto p = s.next({}, room);
    REQUIRE(p);
    CHECK(p->id == fresh);
    CHECK(spool.reads() <= bound);
    MESSAGE("reads for the first pick: " << spool.reads() << " (bound " << bound << ")");
    // Nothing else has room: asking again costs as little.
    const std::size_t before = spool.reads();
    CHECK_FALSE(s.next({}, room));
    CHECK(spool.reads() - before <= bound);
    // The store comes back: its backlog flows in arrival order.
    down_has_room = true;
    for (int i = 0; i < 3; ++i) {
        p = s.next({}, room);
        REQUIRE(p);
        CHECK(p->id == down[static_cast<std::size_t>(i)]);
    }
}
