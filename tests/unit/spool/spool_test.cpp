#include <doctest/doctest.h>

#include <atomic>
#include <random>

#include "spool/lmdb/lmdb.hpp"
#include "spool/record.hpp"
#include "spool_test_support.hpp"

namespace spoold::spool {
using test::check_consistent;
using test::enqueue_sync;
using test::make_message;
using test::open_spool;
using test::TempDir;

namespace {

SpoolOptions options_for(const TempDir& dir, const Clock& clock) {
    SpoolOptions o;
    o.path = dir.sub("spool");
    o.max_size_bytes = 256ULL << 20U;
    o.clock = &clock;
    return o;
}

RecipientUpdate update(std::uint32_t index, RcptState state, UnixMillis next = 0) {
    RecipientUpdate u;
    u.index = index;
    u.state = state;
    u.next_attempt_ms = next;
    u.response = "250 2.0.0 ok";
    return u;
}

} // namespace

TEST_CASE("an enqueued message reads back with its body, indexes and counters") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    NewMessage m =
        make_message(*spool, 2, 2, std::string(10'000, 'b'), clock.now_ms(), clock.now_ms() + 1000);
    m.envelope.size = 1; // the spool records the bytes it stored, not what it was told
    const QueueId id = m.envelope.id;
    REQUIRE(enqueue_sync(*spool, m));

    auto got = spool->get(id);
    REQUIRE(got.has_value());
    REQUIRE(got->has_value());
    CHECK((*got)->size == 10'000);
    CHECK((*got)->recipients == m.envelope.recipients);
    CHECK(test::read_whole_body(*spool, id, 100) == m.body);
    auto ready = spool->ready_after(2, QueueId{0}, 10);
    REQUIRE(ready.has_value());
    CHECK(*ready == std::vector<QueueId>{id});
    auto c = spool->counters();
    REQUIRE(c.has_value());
    CHECK(c->messages[2][0] == 1);
    CHECK(c->bytes[2][0] == 10'000);
    auto old = spool->oldest();
    REQUIRE(old.has_value());
    CHECK(*old == std::optional<QueueId>{id});
    auto exp = spool->expired(clock.now_ms() + 1000, 10);
    REQUIRE(exp.has_value());
    CHECK(*exp == std::vector<QueueId>{id});
    check_consistent(*spool);

    auto missing = spool->get(QueueId{id.value + 1000});
    REQUIRE(missing.has_value());
    CHECK_FALSE(missing->has_value());
    auto body = spool->read_body(QueueId{id.value + 1000}, 0, 100);
    REQUIRE_FALSE(body.has_value());
    CHECK(body.error().kind == ErrorKind::kNotFound);
}

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

TEST_CASE("one failing op in a batch does not fail the others") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    std::atomic<int> ok{0};
    std::atomic<int> not_found{0};
    std::atomic<int> done{0};
    constexpr int kOps = 200;
    for (int i = 0; i < kOps; ++i) {
        auto count = [&](Status st) {
            if (st) {
                ++ok;
            } else if (st.error().kind == ErrorKind::kNotFound) {
                ++not_found;
            }
            ++done;
        };
        if (i % 10 == 0) {
            spool->remove(QueueId{12345}, count);
        } else {
            spool->enqueue(make_message(*spool, 1, 1, "x"), count);
        }
    }
    REQUIRE(test::eventually([&] { return done.load() == kOps; }));
    CHECK(ok.load() == kOps - kOps / 10);
    CHECK(not_found.load() == kOps / 10);
    check_consistent(*spool);
}

TEST_CASE(
    "delivery outcomes, deferral, promotion, hold, class changes and removal keep indexes right") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    NewMessage m = make_message(*spool, 1, 3, "body", clock.now_ms(), clock.now_ms() + 10'000);
    const QueueId id = m.envelope.id;
    REQUIRE(enqueue_sync(*spool, m));

    const UnixMillis later = clock.now_ms() + 5'000;
    REQUIRE(spool->wait([&](Done d) {
        spool->record_outcome(id,
                              {update(0, RcptState::kDelivered),
                               update(1, RcptState::kDeferred, later),
                               update(2, RcptState::kDeferred, later + 1)},
                              std::nullopt, std::move(d));
    }));
    auto e = spool->get(id);
    REQUIRE(e.has_value());
    CHECK(message_state(**e) == MsgState::kDeferred);
    CHECK((*e)->recipients[0].attempts == 1);
    check_consistent(*spool);
    auto due = spool->due(later - 1, 10);
    REQUIRE(due.has_value());
    CHECK(due->empty());

    REQUIRE(spool->wait([&](Done d) { spool->promote_due(later, std::move(d)); }));
    e = spool->get(id);
    CHECK(message_state(**e) == MsgState::kReady);
    CHECK((*e)->recipients[1].state == RcptState::kQueued);
    CHECK((*e)->recipients[2].state == RcptState::kDeferred);
    check_consistent(*spool);

    REQUIRE(spool->wait([&](Done d) { spool->set_held(id, true, std::move(d)); }));
    CHECK(message_state(**spool->get(id)) == MsgState::kHeld);
    check_consistent(*spool);
    REQUIRE(spool->wait([&](Done d) { spool->set_class(id, 5, std::move(d)); }));
    REQUIRE(spool->wait([&](Done d) { spool->set_held(id, false, std::move(d)); }));
    REQUIRE(spool->wait([&](Done d) { spool->flush(id, std::move(d)); }));
    e = spool->get(id);
    CHECK((*e)->klass == 5);
    CHECK((*e)->recipients[2].state == RcptState::kQueued);
    check_consistent(*spool);

    REQUIRE(spool->wait([&](Done d) { spool->hold_expired(id, std::move(d)); }));
    e = spool->get(id);
    CHECK((*e)->held);
    CHECK(((*e)->flags & kFlagExpiredHold) != 0);
    auto exp = spool->expired(clock.now_ms() + 1'000'000, 10);
    CHECK(exp->empty());
    check_consistent(*spool);

    auto bad = spool->wait([&](Done d) { spool->set_class(id, kMaxClasses, std::move(d)); });
    CHECK(bad.error().kind == ErrorKind::kInvalid);

    // A final outcome for the rest removes the message and enqueues the DSN with it.
    NewMessage dsn = make_message(*spool, 0, 1, "dsn body");
    dsn.envelope.flags = kFlagDsn;
    const QueueId dsn_id = dsn.envelope.id;
    REQUIRE(spool->wait([&](Done d) {
        spool->record_outcome(id, {update(1, RcptState::kFailed), update(2, RcptState::kExpired)},
                              dsn, std::move(d));
    }));
    CHECK_FALSE(spool->get(id)->has_value());
    CHECK(spool->get(dsn_id)->has_value());
    check_consistent(*spool);

    REQUIRE(spool->wait([&](Done d) { spool->remove(dsn_id, std::move(d)); }));
    auto c = spool->counters();
    CHECK(c->total_messages() == 0);
    CHECK(c->total_bytes() == 0);
    auto gone = spool->wait([&](Done d) { spool->remove(dsn_id, std::move(d)); });
    CHECK(gone.error().kind == ErrorKind::kNotFound);
}

TEST_CASE("after random sequences of operations the counters and indexes equal a full scan") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    for (const unsigned seed : {1U, 2U, 3U}) {
        std::mt19937 rng(seed);
        std::vector<QueueId> ids;
        // Ops go out in bursts so several different ops share one group commit.
        std::vector<std::function<void(Done)>> burst;
        auto flush_burst = [&] {
            std::vector<Status> results(burst.size());
            std::atomic<std::size_t> answered{0};
            for (std::size_t i = 0; i < burst.size(); ++i) {
                burst[i]([&results, &answered, i](Status st) {
                    results[i] = std::move(st);
                    ++answered;
                });
            }
            REQUIRE(test::eventually([&] { return answered.load() == burst.size(); }));
            for (const Status& st : results) {
                if (!st) {
                    const auto k = st.error().kind;
                    CHECK((k == ErrorKind::kNotFound || k == ErrorKind::kInvalid));
                }
            }
            burst.clear();
        };
        auto pick = [&]() -> QueueId {
            if (ids.empty() || rng() % 20 == 0) {
                return QueueId{rng()}; // sometimes an id that does not exist
            }
            return ids[rng() % ids.size()];
        };
        for (int step = 0; step < 1200; ++step) {
            clock.advance_ms(static_cast<std::int64_t>(rng() % 1000));
            const UnixMillis now = clock.now_ms();
            std::function<void(Done)> op;
            switch (rng() % 12) {
            case 0:
            case 1:
            case 2: {
                const UnixMillis expires =
                    rng() % 2 == 0 ? 0 : now + static_cast<UnixMillis>(rng() % 100'000);
                NewMessage m = make_message(*spool, static_cast<ClassId>(rng() % 4), 1 + rng() % 3,
                                            std::string(rng() % 5000, 'm'), now, expires);
                ids.push_back(m.envelope.id);
                op = [&spool, m](Done d) { spool->enqueue(m, std::move(d)); };
                break;
            }
            case 3:
            case 4: {
                const QueueId id = pick();
                std::vector<RecipientUpdate> ups;
                const std::uint32_t n = 1 + rng() % 3;
                for (std::uint32_t i = 0; i < n; ++i) {
                    const auto state = static_cast<RcptState>(rng() % 5);
                    ups.push_back(update(static_cast<std::uint32_t>(rng() % 3), state,
                                         now + static_cast<UnixMillis>(rng() % 50'000)));
                }
                op = [&spool, id, ups](Done d) {
                    spool->record_outcome(id, ups, std::nullopt, std::move(d));
                };
                break;
            }
            case 5: op = [&spool, now](Done d) { spool->promote_due(now, std::move(d)); }; break;
            case 6: {
                const QueueId id = pick();
                const bool held = rng() % 2 == 0;
                op = [&spool, id, held](Done d) { spool->set_held(id, held, std::move(d)); };
                break;
            }
            case 7: {
                const QueueId id = pick();
                const auto k = static_cast<ClassId>(rng() % 4);
                op = [&spool, id, k](Done d) { spool->set_class(id, k, std::move(d)); };
                break;
            }
            case 8: {
                const QueueId id = pick();
                op = [&spool, id](Done d) { spool->flush(id, std::move(d)); };
                break;
            }
            case 9: {
                const QueueId id = pick();
                op = [&spool, id](Done d) { spool->remove(id, std::move(d)); };
                break;
            }
            case 10: {
                flush_burst();
                auto exp = spool->expired(now, 5);
                REQUIRE(exp.has_value());
                const bool hold = rng() % 2 == 0;
                for (const QueueId id : *exp) {
                    auto st = spool->wait([&](Done d) {
                        if (hold) {
                            spool->hold_expired(id, std::move(d));
                        } else {
                            spool->remove(id, std::move(d));
                        }
                    });
                    CHECK(st.has_value());
                }
                continue;
            }
            default: {
                const QueueId id = pick();
                op = [&spool, id](Done d) { spool->hold_expired(id, std::move(d)); };
                break;
            }
            }
            burst.push_back(std::move(op));
            if (burst.size() >= 1 + rng() % 16) {
                flush_burst();
            }
            if (step % 250 == 0) {
                flush_burst();
                check_consistent(*spool, false);
            }
        }
        flush_burst();
        check_consistent(*spool);
    }
}

TEST_CASE("reopening resumes with ids above the newest stored one, and read-only opens can read") {
    TempDir dir;
    FakeClock clock;
    QueueId last;
    {
        auto spool = open_spool(options_for(dir, clock));
        for (int i = 0; i < 5; ++i) {
            NewMessage m = make_message(*spool, 0, 1, "b");
            last = m.envelope.id;
            REQUIRE(enqueue_sync(*spool, m));
        }
        REQUIRE(spool->wait([&](Done d) { spool->put_meta("k", "v", std::move(d)); }));
    }
    // Same clock instant: only the floor keeps the new ids above the stored ones.
    auto spool = open_spool(options_for(dir, clock));
    CHECK(spool->new_id() > last);
    CHECK(spool->counters()->total_messages() == 5);

    SpoolOptions ro = options_for(dir, clock);
    ro.read_only = true;
    auto reader = open_spool(ro); // a second handle, as spoolctl in another process would
    CHECK(reader->counters()->total_messages() == 5);
    CHECK(*reader->get_meta("k") == std::optional<std::string>{"v"});
    auto st = reader->wait([&](Done d) { reader->remove(last, std::move(d)); });
    CHECK_FALSE(st.has_value());

    SpoolOptions missing = options_for(dir, clock);
    missing.path = dir.sub("nope");
    missing.read_only = true;
    auto bad = Spool::open(missing);
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().kind == ErrorKind::kIo);
}

TEST_CASE("a large staged body round trips, and orphans are collected") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    const QueueId id = spool->new_id();
    std::string expect;
    std::mt19937 rng(7);
    constexpr std::size_t kPiece = 1 << 20;
    for (int i = 0; i < 20; ++i) {
        std::string piece(kPiece, '\0');
        for (char& c : piece) {
            c = static_cast<char>(rng());
        }
        expect += piece;
        REQUIRE(spool->wait([&](Done d) { spool->append_staged(id, piece, std::move(d)); }));
    }
    // Staged data is invisible until enqueued.
    CHECK(spool->counters()->total_messages() == 0);
    NewMessage m = make_message(*spool, 0, 1, "tail");
    m.envelope.id = id;
    expect += "tail";
    REQUIRE(spool->wait([&](Done d) { spool->enqueue_staged(m, std::move(d)); }));
    CHECK((*spool->get(id))->size == expect.size());
    CHECK(test::read_whole_body(*spool, id, 256 * 1024) == expect);
    check_consistent(*spool);

    const QueueId orphan = spool->new_id();
    REQUIRE(spool->wait([&](Done d) { spool->append_staged(orphan, "abandoned", std::move(d)); }));
    REQUIRE(spool->wait(
        [&](Done d) { spool->gc_staged(clock.now_ms() - kStagedOrphanAgeMs, std::move(d)); }));
    clock.advance_ms(2 * kStagedOrphanAgeMs);
    REQUIRE(spool->wait(
        [&](Done d) { spool->gc_staged(clock.now_ms() - kStagedOrphanAgeMs, std::move(d)); }));
    NewMessage late = make_message(*spool, 0, 1, "");
    late.envelope.id = orphan;
    auto st = spool->wait([&](Done d) { spool->enqueue_staged(late, std::move(d)); });
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().kind == ErrorKind::kNotFound);

    const QueueId discarded = spool->new_id();
    REQUIRE(spool->wait([&](Done d) { spool->append_staged(discarded, "x", std::move(d)); }));
    REQUIRE(spool->wait([&](Done d) { spool->discard_staged(discarded, std::move(d)); }));
    late.envelope.id = discarded;
    CHECK_FALSE(
        spool->wait([&](Done d) { spool->enqueue_staged(late, std::move(d)); }).has_value());
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
        lmdb::EnvOptions eo;
        eo.path = dir.sub("spool");
        eo.map_size = 256ULL << 20U;
        auto env = lmdb::Env::open(eo);
        REQUIRE(env.has_value());
        auto msg = (*env)->table("msg", false);
        REQUIRE(msg.has_value());
        auto txn = (*env)->begin_write();
        REQUIRE(txn.has_value());
        auto raw = txn->get(*msg, record::msg_key(bad));
        REQUIRE(raw.has_value());
        const std::string damaged((*raw)->substr(0, record::kHeaderSize + 3));
        REQUIRE(txn->put(*msg, record::msg_key(bad), damaged));
        REQUIRE(txn->commit());
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
        lmdb::EnvOptions eo;
        eo.path = o.path;
        eo.map_size = o.max_size_bytes;
        auto env = lmdb::Env::open(eo);
        REQUIRE(env.has_value());
        auto ready = (*env)->table("ready", false);
        REQUIRE(ready.has_value());
        auto txn = (*env)->begin_write();
        REQUIRE(txn.has_value());
        REQUIRE(*txn->del(*ready, record::ready_key(19 % 3, victim)));
        REQUIRE(*txn->put(*ready, record::ready_key(7, QueueId{42}), {}));
        REQUIRE(txn->commit());
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

} // namespace spoold::spool
