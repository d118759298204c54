#include <doctest/doctest.h>

#include "spool/lmdb/lmdb.hpp"
#include "spool/record.hpp"
#include "spool_test_support.hpp"

namespace spoold::spool {

TEST_CASE("check finds a damaged index and repair rebuilds indexes and counters") {
    test::TempDir dir;
    FakeClock clock;
    SpoolOptions o;
    o.path = dir.sub("spool");
    o.max_size_bytes = 64ULL << 20U;
    o.clock = &clock;
    QueueId victim;
    {
        auto spool = test::open_spool(o);
        for (int i = 0; i < 20; ++i) {
            NewMessage m =
                test::make_message(*spool, static_cast<ClassId>(i % 3), 1, std::string(5000, 'c'),
                                   clock.now_ms(), clock.now_ms() + 1000);
            victim = m.envelope.id;
            REQUIRE(test::enqueue_sync(*spool, m));
        }
        auto clean = spool->check(true, false);
        REQUIRE(clean.has_value());
        CHECK(clean->records == 20);
        CHECK(clean->index_entries == 40);
        CHECK(clean->problems.empty());
    }
    {
        auto raw = test::open_raw(o.path, o.max_size_bytes);
        test::write_txn(*raw.env, [&](lmdb::WriteTxn& txn) {
            REQUIRE(*txn.del(raw.tables.ready, record::ready_key(19 % 3, victim)));
            REQUIRE(*txn.put(raw.tables.ready, record::ready_key(7, QueueId{42}), {}));
        });
    }
    auto spool = test::open_spool(o);
    auto found = spool->check(true, true);
    REQUIRE(found.has_value());
    CHECK(found->problems.size() == 2);
    CHECK(found->repaired);
    auto after = spool->check(true, false);
    REQUIRE(after.has_value());
    CHECK(after->problems.empty());
    test::check_consistent(*spool);
}

TEST_CASE("repair quarantines an undecodable record and indexes the rest again") {
    test::TempDir dir;
    FakeClock clock;
    const SpoolOptions o = test::options_for(dir, clock);
    QueueId bad;
    QueueId good;
    {
        auto spool = test::open_spool(o);
        NewMessage b = test::make_message(*spool, 1, 2, "bad body");
        NewMessage g = test::make_message(*spool, 2, 1, "good body");
        bad = b.envelope.id;
        good = g.envelope.id;
        REQUIRE(test::enqueue_sync(*spool, b));
        REQUIRE(test::enqueue_sync(*spool, g));
    }
    {
        // Damage one record's tail and drop every index entry and counter behind its back.
        auto raw = test::open_raw(o.path, o.max_size_bytes);
        test::write_txn(*raw.env, [&](lmdb::WriteTxn& txn) {
            test::truncate_record(txn, raw.tables, bad);
            REQUIRE(txn.clear(raw.tables.ready));
            REQUIRE(txn.clear(raw.tables.counters));
        });
    }
    auto spool = test::open_spool(o);
    auto found = spool->check(false, true);
    REQUIRE(found.has_value());
    CHECK(found->records == 2);
    CHECK(found->repaired);
    // The damaged record, the good one's missing ready entry, its class's counters.
    CHECK(found->problems.size() == 3);
    auto q = spool->quarantined(10);
    REQUIRE(q.has_value());
    CHECK(*q == std::vector<QueueId>{bad});
    auto ready = spool->ready_after(2, QueueId{0}, 10);
    REQUIRE(ready.has_value());
    CHECK(*ready == std::vector<QueueId>{good});
    auto after = spool->check(true, false);
    REQUIRE(after.has_value());
    CHECK(after->problems.empty());
    test::check_consistent(*spool);
}

} // namespace spoold::spool
