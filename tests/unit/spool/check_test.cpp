#include <doctest/doctest.h>

#include "spool/check.hpp"
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
        // Per message: ready, expiry, its one recipient, its ready domain.
        CHECK(clean->index_entries == 80);
        CHECK(clean->counters_compared);
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

namespace spoold::spool {

TEST_CASE("a check in short transactions finds nothing wrong while the spool changes under it") {
    test::TempDir dir;
    FakeClock clock;
    auto ids = test::open_spool(test::options_for(dir, clock)); // for ids only
    auto raw = test::open_raw(dir.sub("parts"));
    const Indexes indexes(raw.tables);
    const Bodies bodies(raw.tables, 4080);
    const Store store(raw.tables, indexes, bodies);
    const Checker checker(store, indexes, bodies);
    std::vector<QueueId> stored;
    test::write_txn(*raw.env, [&](lmdb::WriteTxn& txn) {
        for (int i = 0; i < 60; ++i) {
            NewMessage m = test::make_message(*ids, static_cast<ClassId>(i % 3), 1 + i % 2,
                                              std::string(100 + i, 'x'), clock.now_ms(),
                                              clock.now_ms() + 1000);
            stored.push_back(m.envelope.id);
            REQUIRE(store.insert(txn, m));
        }
    });
    // Between steps, another writer delivers one message ahead of the check and one behind
    // it, and enqueues a new one: every step still sees records and entries that agree.
    std::size_t changes = 0;
    const auto change = [&] {
        if (changes == stored.size() / 2 - 1) {
            return;
        }
        test::write_txn(*raw.env, [&](lmdb::WriteTxn& txn) {
            REQUIRE(store.remove(txn, stored[changes]));
            REQUIRE(store.remove(txn, stored[stored.size() - 1 - changes]));
            REQUIRE(store.insert(txn, test::make_message(*ids, 1, 2, "new")));
        });
        ++changes;
    };
    CheckReport busy;
    REQUIRE(checker.check(*raw.env, true, busy, 7, change));
    CHECK(changes > 10);
    CHECK(busy.problems.empty());
    CHECK_FALSE(busy.counters_compared);
    CheckReport idle;
    REQUIRE(checker.check(*raw.env, true, idle, 7));
    CHECK(idle.problems.empty());
    CHECK(idle.counters_compared);
    CHECK(idle.records == 60 - changes); // each change delivered two and added one

    // An idle spool is vouched for by the digests alone: one read of each record, each
    // rcpt_gone entry (the delivered messages' recipient-index entries waiting for the sweep)
    // and each index entry in key order (a transaction per 7), then the counters; no lookup
    // pass after it.
    std::size_t steps = 0;
    CheckReport digested;
    REQUIRE(checker.check(*raw.env, true, digested, 7, [&] { ++steps; }));
    CHECK(digested.problems.empty());
    CHECK(digested.counters_compared);
    CHECK(digested.records == idle.records);
    CHECK(digested.index_entries == idle.index_entries);
    const auto txns = [](std::uint64_t n) { return (n + 6) / 7; };
    CHECK(digested.removed_pending == 2 * changes);
    CHECK(steps + 1 == txns(digested.records) + std::max<std::uint64_t>(1, txns(2 * changes)) +
                           txns(digested.index_entries) + 1);

    // One entry swapped for another in the same index (the count stays): the digests differ,
    // and the lookups name both.
    test::write_txn(*raw.env, [&](lmdb::WriteTxn& txn) {
        const QueueId kept = stored[stored.size() / 2]; // no change removed it
        REQUIRE(*txn.del(raw.tables.rcpt, record::rcpt_key("user0@example.net", kept)));
        REQUIRE(*txn.put(raw.tables.rcpt, record::rcpt_key("nobody@example.net", kept), {}));
    });
    CheckReport swapped;
    REQUIRE(checker.check(*raw.env, true, swapped, 7));
    CHECK(swapped.problems.size() == 2);
    CHECK(swapped.index_entries == idle.index_entries);
}

} // namespace spoold::spool
