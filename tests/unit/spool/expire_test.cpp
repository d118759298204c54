#include <doctest/doctest.h>

#include "spool_test_support.hpp"

namespace spoold::spool {
using test::BatchResult;
using test::check_consistent;
using test::enqueue_sync;
using test::expire_sync;
using test::make_message;
using test::open_spool;
using test::options_for;
using test::TempDir;
using test::warn_sync;

namespace {

DelayWarning warning_for(Spool& spool, QueueId id) {
    NewMessage dsn = make_message(spool, 0, 1, "delayed: " + id.text());
    dsn.envelope.flags = kFlagDsn;
    return DelayWarning{id, std::move(dsn)};
}

} // namespace

TEST_CASE("retention is applied to many messages in one batch: bounce, hold, discard, skips") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    const UnixMillis t0 = clock.now_ms();
    std::vector<NewMessage> msgs;
    for (int i = 0; i < 4; ++i) {
        msgs.push_back(make_message(*spool, 1, 2, "body " + std::to_string(i), t0, t0 + 1000));
    }
    msgs[3].envelope.expires_ms = t0 + 5000; // not yet
    msgs[0].envelope.recipients[1].state = RcptState::kDelivered;
    for (const auto& m : msgs) {
        REQUIRE(enqueue_sync(*spool, m));
    }
    NewMessage dsn = make_message(*spool, 0, 1, "the report");
    dsn.envelope.flags = kFlagDsn;
    const QueueId dsn_id = dsn.envelope.id;
    std::vector<Expiry> items(5);
    items[0].id = msgs[0].envelope.id; // bounce
    items[0].response = "expired";
    items[0].dsn = dsn;
    items[1].id = msgs[1].envelope.id; // hold
    items[1].hold = true;
    items[2].id = msgs[2].envelope.id; // discard
    items[2].response = "expired";
    items[3].id = msgs[3].envelope.id;                     // not due
    items[4].id = QueueId{msgs[3].envelope.id.value + 99}; // gone

    const BatchResult r = expire_sync(*spool, std::move(items), t0 + 1000);
    REQUIRE(r.batch.has_value());
    REQUIRE(r.items.size() == 5);
    CHECK(r.items[0].has_value());
    CHECK(r.items[1].has_value());
    CHECK(r.items[2].has_value());
    REQUIRE_FALSE(r.items[3].has_value());
    CHECK(r.items[3].error().kind == ErrorKind::kInvalid);
    REQUIRE_FALSE(r.items[4].has_value());
    CHECK(r.items[4].error().kind == ErrorKind::kNotFound);

    CHECK_FALSE(spool->get(msgs[0].envelope.id)->has_value());
    CHECK_FALSE(spool->get(msgs[2].envelope.id)->has_value());
    CHECK(*spool->dsns_after(QueueId{0}, 10) == std::vector<QueueId>{dsn_id});
    const auto held = spool->get(msgs[1].envelope.id);
    REQUIRE(held->has_value());
    CHECK((*held)->held);
    CHECK(((*held)->flags & kFlagExpiredHold) != 0);
    CHECK(spool->get(msgs[3].envelope.id)->has_value());
    // Only the message that is not due yet is still waiting for its expiry.
    CHECK(*spool->expired(t0 + 10'000, 10) == std::vector<QueueId>{msgs[3].envelope.id});
    check_consistent(*spool);
}

TEST_CASE("an expiry batch larger than one transaction may hold is refused whole") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    const BatchResult r =
        expire_sync(*spool, std::vector<Expiry>(kMaxExpirePerOp + 1), clock.now_ms());
    REQUIRE_FALSE(r.batch.has_value());
    CHECK(r.batch.error().kind == ErrorKind::kInvalid);
    CHECK(r.items.empty());
}

TEST_CASE("delay warnings for many messages are spooled in one batch, one per message") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    std::vector<QueueId> ids;
    for (int i = 0; i < 3; ++i) {
        NewMessage m = make_message(*spool, 1, 2, "body " + std::to_string(i));
        ids.push_back(m.envelope.id);
        REQUIRE(enqueue_sync(*spool, m));
    }
    std::vector<DelayWarning> items;
    std::vector<QueueId> dsns;
    for (const QueueId id : ids) {
        items.push_back(warning_for(*spool, id));
        dsns.push_back(items.back().dsn.envelope.id);
    }
    items.push_back(warning_for(*spool, QueueId{ids.back().value + 99})); // gone

    const BatchResult r = warn_sync(*spool, std::move(items));
    REQUIRE(r.batch.has_value());
    REQUIRE(r.items.size() == 4);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        CHECK(r.items[i].has_value());
        const auto env = spool->get(ids[i]);
        REQUIRE(env->has_value());
        CHECK(((*env)->flags & kFlagDelayWarned) != 0);
        CHECK((*env)->recipients[0].state == RcptState::kQueued); // a warning decides nothing
    }
    REQUIRE_FALSE(r.items[3].has_value());
    CHECK(r.items[3].error().kind == ErrorKind::kNotFound);
    CHECK(*spool->dsns_after(QueueId{0}, 10) == dsns);
    check_consistent(*spool);

    // Warned already: no second DSN, whatever the caller built.
    std::vector<DelayWarning> again;
    for (const QueueId id : ids) {
        again.push_back(warning_for(*spool, id));
    }
    const BatchResult twice = warn_sync(*spool, std::move(again));
    REQUIRE(twice.batch.has_value());
    CHECK(std::all_of(twice.items.begin(), twice.items.end(),
                      [](const Status& st) { return st.has_value(); }));
    CHECK(*spool->dsns_after(QueueId{0}, 10) == dsns);

    const BatchResult big =
        warn_sync(*spool, std::vector<DelayWarning>(kMaxDelayWarningsPerOp + 1));
    REQUIRE_FALSE(big.batch.has_value());
    CHECK(big.batch.error().kind == ErrorKind::kInvalid);
    CHECK(*spool->dsns_after(QueueId{0}, 10) == dsns);
}

} // namespace spoold::spool
