#include <doctest/doctest.h>

#include <atomic>
#include <random>

#include "spool_test_support.hpp"

namespace spoold::spool {
using test::check_consistent;
using test::enqueue_sync;
using test::make_message;
using test::open_spool;
using test::options_for;
using test::TempDir;

using test::update;

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

    REQUIRE(spool->wait(
        [&](Done d) { spool->promote_due(later, spool::kMaxPromotePerOp, std::move(d)); }));
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

TEST_CASE("reclassify moves class and expiry, lifts a retention hold only for a later expiry") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    const UnixMillis now = clock.now_ms();
    NewMessage m = make_message(*spool, 1, 2, "body", now, now + 1'000);
    const QueueId id = m.envelope.id;
    REQUIRE(enqueue_sync(*spool, m));
    REQUIRE(spool->wait([&](Done d) {
        spool->record_outcome(id, {update(0, RcptState::kDeferred, now + 60'000)}, std::nullopt,
                              std::move(d));
    }));
    REQUIRE(spool->wait([&](Done d) { spool->hold_expired(id, std::move(d)); }));

    // Still past its new expiry: stays held, out of the expiry index; deferral untouched.
    REQUIRE(spool->wait([&](Done d) {
        spool->reclassify(id, Reclassification{2, now - 1, now, false}, std::move(d));
    }));
    auto e = spool->get(id);
    CHECK((*e)->klass == 2);
    CHECK((*e)->expires_ms == now - 1);
    CHECK(message_state(**e) == MsgState::kHeld);
    CHECK((*e)->recipients[0].state == RcptState::kDeferred);
    CHECK(spool->expired(now, 10)->empty());
    check_consistent(*spool);

    // A later expiry: the retention hold is lifted, and with flush the deferral too.
    REQUIRE(spool->wait([&](Done d) {
        spool->reclassify(id, Reclassification{0, now + 5'000, now, true}, std::move(d));
    }));
    e = spool->get(id);
    CHECK((*e)->klass == 0);
    CHECK(((*e)->flags & kFlagExpiredHold) == 0);
    CHECK(message_state(**e) == MsgState::kReady);
    CHECK((*e)->recipients[0].state == RcptState::kQueued);
    CHECK(*spool->ready_after(0, QueueId{0}, 10) == std::vector<QueueId>{id});
    CHECK(*spool->expired(now + 5'000, 10) == std::vector<QueueId>{id});
    check_consistent(*spool);

    // An administrator's hold stays.
    REQUIRE(spool->wait([&](Done d) { spool->set_held(id, true, std::move(d)); }));
    REQUIRE(spool->wait([&](Done d) {
        spool->reclassify(id, Reclassification{1, now + 9'000, now, true}, std::move(d));
    }));
    CHECK(message_state(**spool->get(id)) == MsgState::kHeld);
    check_consistent(*spool);

    auto bad = spool->wait([&](Done d) {
        spool->reclassify(id, Reclassification{kMaxClasses, 0, now, false}, std::move(d));
    });
    CHECK(bad.error().kind == ErrorKind::kInvalid);
}

TEST_CASE("the ready epoch moves only when a write gives a message a ready entry it lacked") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    const UnixMillis now = clock.now_ms();
    NewMessage m = make_message(*spool, 1, 1, "body", now, now + 1'000);
    const QueueId id = m.envelope.id;
    REQUIRE(enqueue_sync(*spool, m));
    const auto epoch = [&] {
        auto e = spool->get_meta(kReadyEpochKey);
        REQUIRE(e.has_value());
        return e->value_or(std::string());
    };
    const auto reclassify = [&](Reclassification change) {
        REQUIRE(spool->wait([&](Done d) { spool->reclassify(id, change, std::move(d)); }));
    };
    std::string last = epoch();
    const auto moved = [&] {
        const std::string now_epoch = epoch();
        const bool changed = now_epoch != last;
        last = now_epoch;
        return changed;
    };

    // A retention review's rewrite: a new expiry, same class, nothing flushed.
    reclassify(Reclassification{1, now + 9'000, now, false});
    CHECK((*spool->get(id))->expires_ms == now + 9'000);
    CHECK_FALSE(moved());
    // Another class: the message is ready where that class's cursor may have passed.
    reclassify(Reclassification{2, now + 9'000, now, false});
    CHECK(moved());
    // A hold takes its ready entries away; the release gives them back.
    REQUIRE(spool->wait([&](Done d) { spool->set_held(id, true, std::move(d)); }));
    CHECK_FALSE(moved());
    REQUIRE(spool->wait([&](Done d) { spool->set_held(id, false, std::move(d)); }));
    CHECK(moved());
    // Deferred, then flushed by a reclassify: ready again.
    REQUIRE(spool->wait([&](Done d) {
        spool->record_outcome(id, {update(0, RcptState::kDeferred, now + 60'000)}, std::nullopt,
                              std::move(d));
    }));
    CHECK_FALSE(moved());
    reclassify(Reclassification{2, now + 8'000, now, false}); // still deferred: expiry only
    CHECK_FALSE(moved());
    reclassify(Reclassification{2, now + 8'000, now, true});
    CHECK(moved());
    CHECK(*spool->ready_after(2, QueueId{0}, 10) == std::vector<QueueId>{id});
    check_consistent(*spool);
}

TEST_CASE("a message enqueued held with a filter's reason is held until a release clears it") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    NewMessage m = make_message(*spool, 1, 1, "body");
    m.envelope.held = true;
    m.envelope.hold_reason = "rspamd: spam";
    const QueueId id = m.envelope.id;
    REQUIRE(enqueue_sync(*spool, m));
    auto e = spool->get(id);
    REQUIRE(e->has_value());
    CHECK(message_state(**e) == MsgState::kHeld);
    CHECK((*e)->hold_reason == "rspamd: spam");
    CHECK(spool->counters()->messages[1][static_cast<std::size_t>(MsgState::kHeld)] == 1);
    CHECK(spool->ready_after(1, QueueId{0}, 10)->empty()); // the drain does not see it
    check_consistent(*spool);
    // An administrator's hold keeps the reason; a release clears it.
    REQUIRE(spool->wait([&](Done d) { spool->set_held(id, true, std::move(d)); }));
    CHECK((*spool->get(id))->hold_reason == "rspamd: spam");
    REQUIRE(spool->wait([&](Done d) { spool->set_held(id, false, std::move(d)); }));
    e = spool->get(id);
    CHECK(message_state(**e) == MsgState::kReady);
    CHECK((*e)->hold_reason.empty());
    CHECK(spool->ready_after(1, QueueId{0}, 10)->size() == 1);
    check_consistent(*spool);
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
            case 5:
                op = [&spool, now](Done d) {
                    spool->promote_due(now, spool::kMaxPromotePerOp, std::move(d));
                };
                break;
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

} // namespace spoold::spool
