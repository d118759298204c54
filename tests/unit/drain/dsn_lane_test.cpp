#include <doctest/doctest.h>

#include "drain/dsn_lane.hpp"
#include "tests/support/temp_spool.hpp"

using namespace spoold;
using namespace spoold::drain;
using spoold::test::TempSpool;

namespace {

std::vector<QueueId> drain_queue(DsnLane& lane) {
    std::vector<QueueId> out;
    while (const auto id = lane.next()) {
        out.push_back(*id);
    }
    return out;
}

spool::RecipientUpdate deferred_until(UnixMillis due) {
    spool::RecipientUpdate u;
    u.state = spool::RcptState::kDeferred;
    u.next_attempt_ms = due;
    u.response = "451 4.3.0 try later";
    return u;
}

} // namespace

TEST_CASE("a lane without a smarthost keeps nothing") {
    FakeClock clock;
    TempSpool spool(clock);
    spool.add_dsn("a@remote.example");
    DsnLane lane;
    lane.send(QueueId{1});
    lane.retry_at(0, QueueId{2});
    lane.feed(spool.get(), clock.now_ms());
    CHECK_FALSE(lane.next());
    CHECK(lane.waiting() == 0);
    CHECK_FALSE(lane.scan_done());
}

TEST_CASE("DSNs leave in the order they were sent and retries join when they come due") {
    FakeClock clock;
    TempSpool spool(clock);
    DsnLane lane;
    lane.open();
    lane.feed(spool.get(), 0); // the empty spool's scan
    REQUIRE(lane.scan_done());
    lane.send(QueueId{1});
    lane.retry_at(2000, QueueId{2});
    lane.retry_at(1000, QueueId{3});
    lane.send(QueueId{4});
    CHECK(drain_queue(lane) == std::vector<QueueId>{QueueId{1}, QueueId{4}});
    struct Row {
        UnixMillis now;
        std::vector<QueueId> joined;
    };
    for (const Row& row : {Row{999, {}}, Row{1000, {QueueId{3}}}, Row{5000, {QueueId{2}}}}) {
        CAPTURE(row.now);
        lane.feed(spool.get(), row.now);
        CHECK(drain_queue(lane) == row.joined);
    }
    CHECK(lane.waiting() == 0);
}

TEST_CASE("the start-up scan finds the DSNs left in the spool, a batch per feed, whatever else "
          "it holds") {
    FakeClock clock;
    TempSpool spool(clock);
    const UnixMillis now = clock.now_ms();
    const auto queued = spool.add_dsn("a@remote.example");
    const auto mail = spool.add(1, {"user@example.com"});
    for (int i = 0; i < 10; ++i) {
        (void)spool.add(1, {"user" + std::to_string(i) + "@example.com"});
    }
    const auto deferred = spool.add_dsn("b@remote.example");
    spool.record_outcome(deferred, {deferred_until(now + 60'000)});
    const auto held = spool.add_dsn("c@remote.example");
    spool.set_held(held, true);
    const auto second = spool.add_dsn("d@remote.example");
    (void)mail;

    DsnLane lane(2); // two envelopes per feed
    lane.open();
    int feeds = 0;
    while (!lane.scan_done() && feeds < 10) {
        lane.feed(spool.get(), now);
        ++feeds;
    }
    // 4 DSNs among 15 messages: 2 + 2, then a feed that finds no more. The cost is the
    // DSNs', not the spool's (a scan of every envelope would take 8 feeds).
    CHECK(feeds == 3);
    CHECK(drain_queue(lane) == std::vector<QueueId>{queued, second});
    CHECK(lane.waiting() == 1);
    lane.feed(spool.get(), now + 60'000);
    CHECK(drain_queue(lane) == std::vector<QueueId>{deferred});
}

TEST_CASE("after a smarthost attempt, trouble sends the DSN again at once and a 4xx waits for the "
          "latest retry") {
    const UnixMillis now = 10'000;
    spool::RecipientUpdate delivered;
    delivered.state = spool::RcptState::kDelivered;
    struct Row {
        const char* what;
        bool trouble;
        std::vector<spool::RecipientUpdate> updates;
        std::optional<UnixMillis> retry_due;
        std::vector<QueueId> at_once;
        std::size_t waiting;
    };
    const QueueId id{7};
    const Row rows[] = {
        {"all delivered", false, {delivered}, std::nullopt, {}, 0},
        {"the smarthost was down", true, {}, std::nullopt, {id}, 0},
        {"one 4xx", false, {delivered, deferred_until(now + 60'000)}, now + 60'000, {}, 1},
        {"two 4xx: the later retry",
         false,
         {deferred_until(now + 60'000), deferred_until(now + 120'000)},
         now + 120'000,
         {},
         1},
        {"a retry in the past waits for now", false, {deferred_until(now - 5)}, now, {}, 1},
    };
    for (const Row& row : rows) {
        CAPTURE(row.what);
        DsnLane lane;
        lane.open();
        const auto due = DsnLane::retry_due(row.updates, now);
        CHECK(due == row.retry_due);
        lane.after_attempt(id, row.trouble, due);
        CHECK(drain_queue(lane) == row.at_once);
        CHECK(lane.waiting() == row.waiting);
    }
}

TEST_CASE("a DSN tried before its promotion comes back at its retry, not before the given time") {
    FakeClock clock;
    TempSpool spool(clock); // empty: the start-up scan ends at the first feed
    spool::Envelope env;
    env.id = QueueId{9};
    env.recipients.resize(2);
    env.recipients[0].state = spool::RcptState::kDelivered;
    env.recipients[1].state = spool::RcptState::kDeferred;
    struct Row {
        UnixMillis retry;
        UnixMillis earliest;
        UnixMillis back_at;
    };
    for (const Row& row : {Row{5000, 2000, 5000}, Row{1000, 2000, 2000}}) {
        CAPTURE(row.retry);
        env.recipients[1].next_attempt_ms = row.retry;
        DsnLane lane;
        lane.open();
        lane.not_ready(env, row.earliest);
        lane.feed(spool.get(), row.back_at - 1);
        CHECK_FALSE(lane.next());
        lane.feed(spool.get(), row.back_at);
        CHECK(drain_queue(lane) == std::vector<QueueId>{env.id});
    }
}
