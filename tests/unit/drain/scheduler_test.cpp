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

namespace {

// One mailstore as the drain sees it, for the picks of the tests below: up or down, a
// number of delivery slots, and what is in flight to it.
struct ModelStore {
    bool up = true;
    std::size_t slots = 2;
    std::deque<QueueId> in_flight;
    bool has_room() const { return up && in_flight.size() < slots; }
};

// Fills the store's free slots as Drain::pump does: asks only while it has room.
void pump(Scheduler& s, ModelStore& store, std::set<std::uint64_t>& picked) {
    const DomainRoom room = [&](std::string_view) { return store.has_room(); };
    while (store.has_room()) {
        const auto p = s.next({}, room);
        if (!p) {
            return;
        }
        picked.insert(p->id.value);
        store.in_flight.push_back(p->id);
    }
}

} // namespace

TEST_CASE("one recipient's mail that waited while its store was down or full is all picked "
          "once the store has room again") {
    FakeClock clock;
    TempSpool spool(clock);
    const std::string soak = "soak@example.com";
    auto o = options(); // at most 4 in flight to one recipient
    // The store takes more at once than one recipient may have in flight, so the cap is what
    // holds mail back while the store is up, and the store's room while it is down.
    ModelStore store;
    store.slots = o.max_per_recipient + 2;
    Scheduler s(spool.get(), o, clock);
    std::set<std::uint64_t> queued;
    std::set<std::uint64_t> picked;
    const auto enqueue = [&](std::size_t n) {
        for (const auto id : spool.add_all(std::vector<TestMessage>(n, TestMessage{1, {soak}}))) {
            queued.insert(id.value);
        }
    };
    // Up: more than the cap queued, the recipient's slots fill, the rest is parked.
    enqueue(3 * o.max_per_recipient);
    pump(s, store, picked);
    REQUIRE(store.in_flight.size() == o.max_per_recipient);
    // One delivery done while the store is up: the recipient has a free slot again.
    s.release(store.in_flight.front());
    spool.remove(store.in_flight.front());
    store.in_flight.pop_front();
    // The store goes down: the connections of the deliveries in flight are cut before any
    // reply (no attempt counted: the messages stay ready), and mail keeps arriving.
    store.up = false;
    for (const auto id : store.in_flight) {
        s.release(id);
    }
    store.in_flight.clear();
    pump(s, store, picked);
    enqueue(3 * o.max_per_recipient);
    clock.advance_ms(o.refresh.count());
    pump(s, store, picked);
    CHECK(store.in_flight.empty());
    // Up again: every ready message is delivered, a slot at a time, with nothing else
    // happening (no ready epoch change, no recheck from a promotion).
    store.up = true;
    std::size_t delivered = 0;
    for (std::size_t step = 0; step < 4 * queued.size(); ++step) {
        pump(s, store, picked);
        if (store.in_flight.empty()) {
            break;
        }
        const QueueId done = store.in_flight.front();
        store.in_flight.pop_front();
        s.release(done);
        spool.remove(done);
        ++delivered;
        clock.advance_ms(10);
    }
    CHECK(spool.size() == 0);
    CHECK(picked == queued);
    MESSAGE("delivered " << delivered << " of " << queued.size() - 1);
}

TEST_CASE("a message whose id was taken before a later one's, but committed after the cursor "
          "passed that one, is still picked") {
    FakeClock clock;
    TempSpool spool(clock);
    const auto o = options();
    Scheduler s(spool.get(), o, clock);
    // Ids are taken when a message starts to arrive: a slow sender's message commits after
    // a quicker one that started later, so its id lies behind what the lane has read.
    const QueueId slow = spool->new_id();
    const QueueId quick = spool.add(1, {rcpt(1)});
    REQUIRE(slow < quick);
    auto p = s.next();
    REQUIRE(p);
    CHECK(p->id == quick);
    CHECK_FALSE(s.next());
    spool::NewMessage m;
    m.envelope.id = slow;
    m.envelope.arrival_ms = clock.now_ms();
    m.envelope.klass = 1;
    m.envelope.mail_from = "sender@example.org";
    spool::Recipient r;
    r.address = rcpt(2);
    m.envelope.recipients.push_back(r);
    m.body = "hello\r\n";
    REQUIRE(spool->wait([&](spool::Done d) { spool->enqueue(std::move(m), std::move(d)); })
                .has_value());
    // The intake tells the drain of each commit; nothing else (no refresh, no ready epoch)
    // would bring the lane back to it.
    s.arrived(slow);
    p = s.next();
    REQUIRE(p);
    CHECK(p->id == slow);
    // One that commits above everything read is found by the lane itself.
    const QueueId later = spool.add(1, {rcpt(3)});
    s.arrived(later);
    p = s.next();
    REQUIRE(p);
    CHECK(p->id == later);
    CHECK_FALSE(s.next());
}
