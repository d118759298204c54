#include <doctest/doctest.h>

#include "spool/bodies.hpp"
#include "spool/indexes.hpp"
#include "spool/lmdb/lmdb.hpp"
#include "spool/record.hpp"
#include "spool/store.hpp"
#include "spool_test_support.hpp"

namespace spoold::spool {
using test::check_consistent;
using test::enqueue_sync;
using test::make_message;
using test::open_spool;
using test::options_for;
using test::TempDir;

TEST_CASE("an id that is already in the spool is refused, never overwritten") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    NewMessage m = make_message(*spool, 0, 1, "first");
    REQUIRE(enqueue_sync(*spool, m));
    NewMessage again = m;
    again.body = "second";
    auto st = enqueue_sync(*spool, again);
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().kind == ErrorKind::kInternal);
    CHECK(test::read_whole_body(*spool, m.envelope.id) == "first");
    check_consistent(*spool);
}

TEST_CASE("an outcome refused for its DSN writes nothing, so its batch goes on without it") {
    // The writer re-runs a batch only after LMDB failures; any other refusal must come before
    // the op's first write, or the op would be half applied in the committed batch.
    TempDir dir;
    FakeClock clock;
    auto raw = test::open_raw(dir.sub("env"));
    const Indexes indexes(raw.tables);
    const Bodies bodies(raw.tables, 100);
    const Store store(raw.tables, indexes, bodies);
    auto spool = open_spool(options_for(dir, clock)); // only for ids and message builders
    const NewMessage a = make_message(*spool, 1, 1, "a body");
    const NewMessage b = make_message(*spool, 1, 1, "b body");
    NewMessage dsn = make_message(*spool, 0, 1, "dsn");
    dsn.envelope.id = b.envelope.id; // taken
    RecipientUpdate delivered;
    delivered.state = RcptState::kDelivered;

    test::write_txn(*raw.env, [&](lmdb::WriteTxn& txn) {
        REQUIRE(store.insert(txn, a));
        REQUIRE(store.insert(txn, b));
        auto st = store.record_outcome(txn, a.envelope.id, {delivered}, dsn);
        REQUIRE_FALSE(st.has_value());
        CHECK(st.error().kind == ErrorKind::kInternal);
        auto loaded = store.load(txn, a.envelope.id);
        REQUIRE(loaded.has_value());
        REQUIRE(loaded->has_value());
        CHECK((*loaded)->env.recipients[0].state == RcptState::kQueued);
    });
    auto txn = raw.env->begin_read();
    REQUIRE(txn.has_value());
    auto ready = indexes.ready_after(*txn, 1, QueueId{0}, 10);
    REQUIRE(ready.has_value());
    CHECK(*ready == std::vector<QueueId>{a.envelope.id, b.envelope.id});
    auto c = indexes.counters(*txn);
    REQUIRE(c.has_value());
    CHECK(c->messages[1][0] == 2);
}

TEST_CASE("a corrupt record is quarantined and the rest of the spool works on") {
    TempDir dir;
    FakeClock clock;
    QueueId bad;
    QueueId good;
    {
        auto spool = open_spool(options_for(dir, clock));
        NewMessage b = make_message(*spool, 1, 2, "bad body", clock.now_ms(), clock.now_ms() + 5);
        NewMessage g = make_message(*spool, 1, 1, "good body");
        bad = b.envelope.id;
        good = g.envelope.id;
        REQUIRE(enqueue_sync(*spool, b));
        REQUIRE(enqueue_sync(*spool, g));
    }
    {
        // Damage the tail of one record behind the spool's back; the header stays intact.
        auto raw = test::open_raw(dir.sub("spool"), 256ULL << 20U);
        test::write_txn(*raw.env,
                        [&](lmdb::WriteTxn& txn) { test::truncate_record(txn, raw.tables, bad); });
    }
    auto spool = open_spool(options_for(dir, clock));
    auto got = spool->get(bad);
    REQUIRE_FALSE(got.has_value());
    CHECK(got.error().kind == ErrorKind::kCorrupt);
    REQUIRE(test::eventually([&] {
        auto q = spool->quarantined(10);
        return q.has_value() && *q == std::vector<QueueId>{bad};
    }));
    auto after = spool->get(bad);
    REQUIRE(after.has_value());
    CHECK_FALSE(after->has_value());
    CHECK(test::read_whole_body(*spool, good) == "good body");
    check_consistent(*spool);
    CHECK(spool->counters()->total_messages() == 1);
}

} // namespace spoold::spool
