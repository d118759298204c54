#include <doctest/doctest.h>

#include <set>

#include "common/metrics.hpp"

#include "drain_harness.hpp"

using namespace spoold;
using namespace spoold::drain;
using namespace spoold::drain::test;

TEST_CASE(
    "each recipient gets its own outcome: 250 delivered, 452 deferred, 550 failed with a DSN") {
    Harness h;
    const auto id = h.spool.add(1, {"good@example.com", "full@example.com", "nobody@example.com"});
    int calls = 0;
    h.store->script = [&](const DeliveryRequest& r) {
        DeliveryResult res;
        if (++calls == 1) {
            REQUIRE(r.recipients.size() == 3);
            res.per_recipient = {reply(250, "2.0.0"), reply(452, "4.2.2"), reply(550, "5.1.1")};
        } else {
            for (std::size_t i = 0; i < r.recipients.size(); ++i) {
                res.per_recipient.push_back(reply(250, "2.0.0"));
            }
        }
        return res;
    };
    const UnixMillis t0 = h.clock.now_ms();
    h.drain->start();
    // Counted only after the outcomes' commit.
    REQUIRE(h.run_until([&] { return h.snap().failed == 1; }));
    const auto env = h.spool.env(id);
    CHECK(env.recipients[0].state == spool::RcptState::kDelivered);
    CHECK(env.recipients[1].state == spool::RcptState::kDeferred);
    CHECK(env.recipients[1].next_attempt_ms == t0 + 60'000);
    CHECK(env.recipients[1].attempts == 1);
    CHECK(env.recipients[1].last_response.starts_with("452 4.2.2"));
    CHECK(env.recipients[2].state == spool::RcptState::kFailed);
    REQUIRE(h.dsn_calls.size() == 1);
    CHECK(h.dsn_calls[0].id == id);
    CHECK(h.dsn_calls[0].indexes == std::vector<std::uint32_t>{2});
    // The DSN was spooled in the same commit, under the id the builder gave it; without a
    // relay it is delivered like other mail.
    REQUIRE(h.dsn_ids.size() == 1);
    REQUIRE(h.run_until([&] { return Harness::received(h.store, h.dsn_ids[0]); }));
    const auto dsn = std::find_if(h.store->received.begin(), h.store->received.end(),
                                  [&](const auto& r) { return r.id == h.dsn_ids[0]; });
    CHECK(dsn->body == "DSN for " + id.text() + "\r\n");
    CHECK(dsn->recipients == std::vector<std::string>{"sender@example.org"});
    CHECK(h.snap().delivered >= 1);
    CHECK(h.snap().deferred == 1);

    // The deferral comes due: promoted, retried with only that recipient, then gone.
    h.clock.advance_ms(60'000);
    REQUIRE(h.run_until([&] { return !h.spool.contains(id); }));
    const auto retried =
        std::find_if(h.store->received.begin(), h.store->received.end(),
                     [&](const auto& r) { return r.id == id && r.recipients.size() == 1; });
    REQUIRE(retried != h.store->received.end());
    CHECK(retried->recipients[0] == "full@example.com");
}

TEST_CASE("session-level mailstore trouble opens the breaker and does not burn attempts") {
    auto config = test_config();
    config.drain.initial_concurrency = 1;
    Harness h(config);
    h.store->up = false;
    std::vector<QueueId> ids;
    for (int i = 0; i < 5; ++i) {
        ids.push_back(h.spool.add(1, {"user" + std::to_string(i) + "@example.com"}));
    }
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.snap().mailstores[0].breaker == BreakerState::kOpen; }));
    h.run_turns(3);
    CHECK(h.store->attempts == 3);
    CHECK(h.snap().mailstores[0].in_flight == 0);
    for (const auto id : ids) {
        REQUIRE(h.spool.contains(id));
        const auto r = h.spool.env(id).recipients[0];
        CHECK(r.state == spool::RcptState::kQueued);
        CHECK(r.attempts == 0);
    }
    CHECK(h.snap().failed == 0);
    CHECK(h.snap().deferred == 0);

    // Probes wait for their backoff and fail while the store is down.
    CHECK(h.store->probes == 0);
    h.clock.advance_ms(1000);
    REQUIRE(h.run_until([&] { return h.store->probes == 1; }));
    h.run_turns(3);
    CHECK(h.store->probes == 1);
    CHECK(h.snap().mailstores[0].breaker == BreakerState::kOpen);
    CHECK(h.store->attempts == 3);

    // The store comes back: the next probe half-opens, deliveries resume and close it.
    h.store->up = true;
    h.clock.advance_ms(8000);
    REQUIRE(h.run_until([&] { return h.spool.size() == 0; }));
    CHECK(h.store->probes == 2);
    CHECK(h.snap().mailstores[0].breaker == BreakerState::kClosed);
    CHECK(h.store->received.size() == 5);
    REQUIRE(h.run_until([&] { return h.snap().delivered >= 5; })); // counted after the commit
    CHECK(h.snap().delivered == 5);
}

TEST_CASE("urgent mail overtakes a bulk backlog") {
    auto config = test_config();
    config.drain.max_concurrency = 2;
    Harness h(config);
    std::vector<TestMessage> bulk;
    for (int i = 0; i < 300; ++i) {
        bulk.push_back(TestMessage{2, {"bulk" + std::to_string(i) + "@example.com"}});
    }
    h.spool.add_all(std::move(bulk));
    std::vector<TestMessage> boss;
    for (int i = 0; i < 5; ++i) {
        boss.push_back(TestMessage{0, {"boss" + std::to_string(i) + "@example.com"}});
    }
    std::set<std::uint64_t> urgent;
    for (const auto id : h.spool.add_all(std::move(boss))) {
        urgent.insert(id.value);
    }
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.spool.size() == 0; }));
    REQUIRE(h.store->received.size() == 305);
    std::size_t last_urgent = 0;
    for (std::size_t i = 0; i < h.store->received.size(); ++i) {
        if (urgent.contains(h.store->received[i].id.value)) {
            last_urgent = i;
        }
    }
    CHECK(last_urgent < 10);
}

TEST_CASE("a large backlog drains fully, exactly once, within the concurrency limit") {
    Harness h;
    constexpr int kMessages = 3000;
    std::vector<TestMessage> messages;
    for (int i = 0; i < kMessages; ++i) {
        // Some recipients get many messages: the per-recipient cap must not stall them.
        messages.push_back(TestMessage{static_cast<spool::ClassId>(i % 3),
                                       {"user" + std::to_string(i % 50) + "@example.com"},
                                       "Subject: " + std::to_string(i) +
                                           "\r\n\r\nbody of message " + std::to_string(i) +
                                           "\r\n"});
    }
    h.spool.add_all(std::move(messages));
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.spool.size() == 0; }, 60s));
    // The spool shows the last commit before the drain resumes to count it and free its slot.
    REQUIRE(h.run_until([&] {
        return h.snap().messages_delivered >= kMessages && h.snap().mailstores[0].in_flight == 0;
    }));
    CHECK(h.store->received.size() == kMessages);
    std::set<std::uint64_t> ids;
    for (const auto& r : h.store->received) {
        CHECK(ids.insert(r.id.value).second);
    }
    CHECK(h.store->max_in_flight <= 8);
    CHECK(h.store->max_in_flight > 2); // grew from initial_concurrency
    const auto& first = h.store->received.front();
    CHECK(first.body.starts_with("Subject: "));
    CHECK(first.body.ends_with("\r\n"));
    const auto s = h.snap();
    CHECK(s.delivered == kMessages);
    CHECK(s.messages_delivered == kMessages);
    CHECK(s.mailstores[0].in_flight == 0);
    CHECK(s.mailstores[0].concurrency_limit == 8);
    CHECK(s.rate_per_s == doctest::Approx(kMessages / 10.0)); // the fake clock stood still
}

TEST_CASE("the rate limit spaces deliveries by the clock") {
    auto config = test_config();
    config.drain.max_rate = 10; // one token per 100 ms, burst of one
    Harness h(config);
    for (int i = 0; i < 50; ++i) {
        h.spool.add(1, {"user" + std::to_string(i) + "@example.com"});
    }
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.store->received.size() == 1; }));
    h.run_turns(3);
    CHECK(h.store->received.size() == 1);
    for (std::size_t i = 2; i <= 6; ++i) {
        h.clock.advance_ms(100);
        REQUIRE(h.run_until([&] { return h.store->received.size() == i; }));
    }
    h.run_turns(3);
    CHECK(h.store->received.size() == 6);
}

TEST_CASE("spoolctl pause (spool meta) and pause() stop new deliveries") {
    Harness h;
    h.spool.set_meta("paused", "1");
    for (int i = 0; i < 10; ++i) {
        h.spool.add(1, {"user" + std::to_string(i) + "@example.com"});
    }
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.snap().paused; }));
    h.run_turns(3);
    CHECK(h.store->attempts == 0);
    h.spool.set_meta("paused", "0");
    h.clock.advance_ms(1000);
    REQUIRE(h.run_until([&] { return h.spool.size() == 0; }));

    h.drain->pause(true);
    REQUIRE(h.run_until([&] { return h.snap().paused; }));
    h.spool.add(1, {"late@example.com"});
    h.run_turns(3);
    CHECK(h.spool.size() == 1);
    h.drain->pause(false);
    REQUIRE(h.run_until([&] { return h.spool.size() == 0; }));
}

TEST_CASE("spoolctl pause --mailstore (spool meta paused.NAME) stops that mailstore only") {
    Harness h;
    h.spool.set_meta("paused.lmtp", "1");
    for (int i = 0; i < 4; ++i) {
        h.spool.add(1, {"user" + std::to_string(i) + "@example.com"});
    }
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.snap().mailstores[0].paused; }));
    CHECK_FALSE(h.snap().paused);
    CHECK(h.snap().mailstores[0].concurrency_limit == 0);
    h.run_turns(3);
    CHECK(h.store->attempts == 0);
    // Another mailstore's flag does not touch this one.
    h.spool.set_meta("paused.lmtp", "0");
    h.spool.set_meta("paused.other", "1");
    h.clock.advance_ms(1000);
    REQUIRE(h.run_until([&] { return h.spool.size() == 0; }));
    CHECK_FALSE(h.snap().mailstores[0].paused);
}

TEST_CASE("a poison message is deferred after repeated trouble while the store works for others") {
    Harness h;
    const auto poison = h.spool.add(1, {"crash@example.com"});
    std::vector<QueueId> good;
    for (int i = 0; i < 30; ++i) {
        good.push_back(h.spool.add(1, {"user" + std::to_string(i) + "@example.com"}));
    }
    int poison_tries = 0;
    h.store->script = [&](const DeliveryRequest& r) {
        DeliveryResult res;
        if (r.recipients.at(0) == "crash@example.com") {
            // What a store whose delivery process dies on this message answers.
            ++poison_tries;
            res.session_reply = make_reply(421, "4.4.2", "connection lost");
            res.mailstore_trouble = true;
            return res;
        }
        res.per_recipient.push_back(reply(250, "2.0.0"));
        return res;
    };
    h.drain->start();
    // Time passes in steps of a second, with new mail arriving (a store that is busy
    // with others): the scheduler comes back to the message at the head of its class,
    // and a breaker opened meanwhile probes and prefers the new mail for its trial.
    bool deferred = false;
    for (int step = 0; step < 60 && !deferred; ++step) {
        std::vector<TestMessage> arriving;
        for (int i = 0; i < 3; ++i) {
            arriving.push_back(
                TestMessage{1, {"new" + std::to_string(step * 3 + i) + "@example.com"}});
        }
        for (const auto id : h.spool.add_all(std::move(arriving))) {
            good.push_back(id);
        }
        deferred =
            h.run_until_or_turns([&] { return h.spool.size() == 1 && h.snap().poison == 1; }, 4);
        h.clock.advance_ms(1000);
    }
    REQUIRE(deferred);
    // Strikes count only across proof of health (others delivered, or a probe passed),
    // so tries in a row without any may add up to a few more than the strikes.
    CHECK(poison_tries >= static_cast<int>(kPoisonStrikes));
    CHECK(poison_tries <= 2 * static_cast<int>(kPoisonStrikes));
    const int tries_to_defer = poison_tries;
    const auto r = h.spool.env(poison).recipients[0];
    CHECK(r.state == spool::RcptState::kDeferred);
    CHECK(r.attempts == 1);
    CHECK(r.last_response.starts_with("421 4.4.2"));
    CHECK(h.snap().failed == 0);
    for (const auto id : good) {
        CHECK_FALSE(h.spool.contains(id));
    }
    // When it comes due it gets one more try, and is deferred again at once.
    h.clock.advance_ms(60'000);
    REQUIRE(h.run_until([&] { return h.spool.env(poison).recipients[0].attempts == 2; }));
    CHECK(poison_tries == tries_to_defer + 1);
    CHECK(h.spool.env(poison).recipients[0].state == spool::RcptState::kDeferred);
    // Its trouble no longer counts against the store: new mail flows.
    const auto late = h.spool.add(1, {"late@example.com"});
    for (int step = 0; step < 30 && h.spool.contains(late); ++step) {
        h.run_until_or_turns([&] { return !h.spool.contains(late); }, 4);
        h.clock.advance_ms(1000);
    }
    CHECK_FALSE(h.spool.contains(late));
    CHECK(poison_tries == tries_to_defer + 1);
}

TEST_CASE("a store that is simply down makes no poison messages") {
    auto config = test_config();
    config.drain.initial_concurrency = 1;
    Harness h(config);
    h.store->up = false;
    const auto id = h.spool.add(1, {"user@example.com"});
    h.drain->start();
    // A try is over when its result is in: a probe's at once, a delivery's once its slot is free.
    const auto tried = [&](int n) {
        return h.store->attempts + h.store->probes >= n && h.snap().mailstores[0].in_flight == 0;
    };
    REQUIRE(h.run_until([&] { return tried(1); }));
    // Open, probe fails, ... many rounds of trouble with no sign of health in between: each
    // round (the longest backoff) brings one more try, a delivery while the breaker is
    // closed, a probe once it is open.
    for (int round = 0; round < 5; ++round) {
        h.clock.advance_ms(8000);
        REQUIRE(h.run_until([&] { return tried(round + 2); }));
    }
    CHECK(h.snap().mailstores[0].breaker == BreakerState::kOpen);
    CHECK(h.store->probes >= 1);
    CHECK(h.snap().poison == 0);
    CHECK(h.spool.env(id).recipients[0].state == spool::RcptState::kQueued);
    CHECK(h.spool.env(id).recipients[0].attempts == 0);
    h.store->up = true;
    h.clock.advance_ms(8000);
    REQUIRE(h.run_until([&] { return h.spool.size() == 0; }));
    CHECK(h.snap().poison == 0);
}

TEST_CASE(
    "DSNs already in the spool at start go out through the relay while the mailstore is down") {
    Harness h;
    h.add_relay();
    h.store->up = false;
    h.spool.set_meta("paused.lmtp", "1"); // nothing goes through the mailstore's path
    const auto mail = h.spool.add(1, {"user@example.com"});
    const auto dsn = h.spool.add_dsn("sender@remote.example");
    const auto deferred_dsn = h.spool.add_dsn("other@remote.example");
    // This one was deferred by the smarthost before the restart; its retry is due later.
    {
        spool::RecipientUpdate u;
        u.index = 0;
        u.state = spool::RcptState::kDeferred;
        u.next_attempt_ms = h.clock.now_ms() + 120'000;
        u.response = "451 4.3.0 try later";
        h.spool.record_outcome(deferred_dsn, {u});
    }
    h.drain->start();
    REQUIRE(h.run_until([&] { return !h.spool.contains(dsn); }));
    REQUIRE(h.relay->received.size() == 1);
    CHECK(h.relay->received[0].recipients == std::vector<std::string>{"sender@remote.example"});
    CHECK(h.spool.contains(mail));
    CHECK(h.spool.contains(deferred_dsn));
    CHECK(h.store->received.empty());

    // The deferred DSN's retry comes due: promoted, then sent through the lane too (the
    // lane looks again a second later when the promotion had not committed yet).
    h.clock.advance_ms(121'000);
    REQUIRE(h.step_until([&] { return !h.spool.contains(deferred_dsn); }));
    CHECK(h.relay->received.size() == 2);
    CHECK(h.spool.contains(mail));
}

TEST_CASE("a DSN the smarthost refuses is held for the administrator, never dropped") {
    Harness h;
    h.add_relay();
    const auto dsn = h.spool.add_dsn("sender@remote.example");
    h.relay->script = [&](const DeliveryRequest&) {
        DeliveryResult r;
        r.per_recipient.push_back(reply(554, "5.7.1")); // "relaying denied"
        return r;
    };
    const std::uint64_t held_before = metrics::spoold_metrics().dsns_held_total.value();
    h.drain->start();
    // The hold commits on the spool's writer thread; the counter moves once the drain hears.
    REQUIRE(h.run_until(
        [&] { return metrics::spoold_metrics().dsns_held_total.value() != held_before; }));
    REQUIRE(h.spool.env(dsn).held);
    const spool::Envelope env = h.spool.env(dsn);
    CHECK(env.recipients[0].state == spool::RcptState::kQueued);
    CHECK(env.recipients[0].attempts == 1);
    CHECK(env.recipients[0].last_response.starts_with("554"));
    CHECK(metrics::spoold_metrics().dsns_held_total.value() == held_before + 1);
    CHECK(h.relay->attempts == 1);
}

TEST_CASE("a DSN the smarthost defers is retried through the relay, not behind the mailstore") {
    Harness h;
    h.add_relay();
    const auto dsn = h.spool.add_dsn("sender@remote.example");
    int tries = 0;
    h.relay->script = [&](const DeliveryRequest&) {
        DeliveryResult r;
        r.per_recipient.push_back(++tries == 1 ? reply(451, "4.7.1") : reply(250, "2.0.0"));
        return r;
    };
    h.store->up = false;
    for (int i = 0; i < 3; ++i) {
        h.spool.add(1, {"user" + std::to_string(i) + "@example.com"});
    }
    h.drain->start();
    REQUIRE(h.run_until([&] { return tries == 1; }));
    REQUIRE(h.run_until(
        [&] { return h.spool.env(dsn).recipients[0].state == spool::RcptState::kDeferred; }));
    bool open = false;
    for (int step = 0; step < 30 && !open; ++step) {
        open = h.run_until_or_turns(
            [&] { return h.snap().mailstores[0].breaker == BreakerState::kOpen; }, 2);
        h.clock.advance_ms(1000);
    }
    REQUIRE(open);
    h.clock.advance_ms(61'000);
    REQUIRE(h.step_until([&] { return !h.spool.contains(dsn); }));
    CHECK(tries == 2);
    CHECK(h.snap().mailstores[0].breaker != BreakerState::kClosed);
    CHECK(h.spool.size() == 3);
}

TEST_CASE("a DSN this process spools while the mailstore is paused leaves through the relay") {
    auto config = test_config();
    config.classes[1].on_expiry = policy::ExpiryAction::kBounce;
    config.classes[1].retention = 1s;
    Harness h(config);
    h.add_relay();
    h.spool.set_meta("paused.lmtp", "1"); // the scheduler is not asked: only the lane sends
    const auto id = h.spool.add(1, {"a@example.com"}, "hello\r\n", "sender@example.org",
                                h.clock.now_ms() + 1000);
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.snap().mailstores[0].paused; }));
    h.clock.advance_ms(kExpiryIntervalMs);
    // The builder's id is the id in the spool: the lane finds the DSN under it.
    REQUIRE(h.run_until([&] { return h.dsn_ids.size() == 1; }));
    REQUIRE(h.run_until([&] { return Harness::received(h.relay, h.dsn_ids[0]); }));
    REQUIRE(h.relay->received.size() == 1);
    CHECK(h.relay->received[0].recipients == std::vector<std::string>{"sender@example.org"});
    CHECK(h.relay->received[0].body == "DSN for " + id.text() + "\r\n");
    REQUIRE(h.run_until([&] { return h.spool.size() == 0; }));
    CHECK(h.store->attempts == 0);
}

TEST_CASE("a DSN the drain spools behind the scheduler's cursors is delivered without a ready "
          "epoch change") {
    // No smarthost: DSNs go to the default mailstore through the scheduler, in their class's
    // DSN lane. This one's id is taken before an earlier DSN's, as when mail keeps arriving
    // while a DSN is built and committed: the lane has read past it by then.
    Harness h(test_config(), true); // "other" takes example.net
    h.next_dsn_id = h.spool->new_id();
    const auto earlier = h.spool.add_dsn("someone@example.org"); // in the same lane
    const auto failing = h.spool.add(1, {"x@example.net"});
    REQUIRE(*h.next_dsn_id < earlier);
    h.other->script = [](const DeliveryRequest&) {
        DeliveryResult r;
        r.per_recipient = {reply(550, "5.1.1")};
        return r;
    };
    h.store->block = true; // the earlier DSN stays in flight: the lane's cursor is past it
    const auto epoch = h.spool->get_meta(spool::kReadyEpochKey);
    REQUIRE(epoch.has_value());
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.store->in_flight >= 1 && !h.spool.contains(failing); }));
    REQUIRE(h.dsn_ids.size() == 1);
    const QueueId dsn = h.dsn_ids[0];
    REQUIRE(h.spool.contains(dsn));
    h.store->block = false;
    // Nothing else moves the scheduler back: the clock stands still and the ready epoch stays.
    REQUIRE(h.run_until([&] { return Harness::received(h.store, dsn); }));
    CHECK(Harness::received(h.store, earlier));
    REQUIRE(h.run_until([&] { return h.spool.size() == 0; }));
    const auto epoch_after = h.spool->get_meta(spool::kReadyEpochKey);
    REQUIRE(epoch_after.has_value());
    CHECK(*epoch_after == *epoch);
}

TEST_CASE(
    "recipients go to the mailstore of their domain, and one store down holds up only its own") {
    Harness h(test_config(), true);
    h.store->up = false; // example.com's store (the default) is down
    const auto both = h.spool.add(1, {"a@example.com", "b@EXAMPLE.net"});
    const auto net_only = h.spool.add(1, {"c@example.net"});
    h.drain->start();
    REQUIRE(h.run_until([&] { return !h.spool.contains(net_only); }));
    REQUIRE(h.run_until([&] {
        return h.spool.contains(both) &&
               h.spool.env(both).recipients[1].state == spool::RcptState::kDelivered;
    }));
    const auto env = h.spool.env(both);
    CHECK(env.recipients[0].state == spool::RcptState::kQueued);
    CHECK(env.recipients[0].attempts == 0);
    // The other store saw only its own recipients, each once.
    REQUIRE(h.other->received.size() == 2);
    std::set<std::vector<std::string>> got;
    for (const auto& r : h.other->received) {
        got.insert(r.recipients);
    }
    CHECK(got == std::set<std::vector<std::string>>{{"b@EXAMPLE.net"}, {"c@example.net"}});
    CHECK(h.store->received.empty());

    // Pausing the other store stops its deliveries only.
    h.spool.set_meta("paused.other", "1");
    h.clock.advance_ms(1000);
    REQUIRE(h.run_until([&] { return h.snap().mailstores[1].paused; }));
    const auto late = h.spool.add(1, {"d@example.net"});
    h.store->up = true;
    for (int step = 0; step < 30 && h.spool.contains(both); ++step) {
        h.run_until_or_turns([&] { return !h.spool.contains(both); }, 2);
        h.clock.advance_ms(1000);
    }
    CHECK_FALSE(h.spool.contains(both));
    REQUIRE(h.store->received.size() == 1);
    CHECK(h.store->received[0].recipients == std::vector<std::string>{"a@example.com"});
    CHECK(h.spool.contains(late));
    CHECK(h.other->received.size() == 2);
    h.spool.set_meta("paused.other", "0");
    h.clock.advance_ms(1000);
    REQUIRE(h.run_until([&] { return !h.spool.contains(late); }));
}

TEST_CASE("expiry applies each class's action: bounce with a DSN, hold, discard") {
    auto config = test_config();
    config.classes[0].on_expiry = policy::ExpiryAction::kBounce;
    config.classes[1].on_expiry = policy::ExpiryAction::kHold;
    config.classes[2].on_expiry = policy::ExpiryAction::kDiscard;
    for (auto& c : config.classes) {
        c.retention = 1s; // the drain checks the stored expiry against the retention
    }
    Harness h(config);
    const UnixMillis expires = h.clock.now_ms() + 1000;
    const auto ids = h.spool.add_all({
        TestMessage{
            0, {"a@example.com", "b@example.com"}, "hello\r\n", "sender@example.org", expires},
        TestMessage{1, {"c@example.com"}, "hello\r\n", "sender@example.org", expires},
        TestMessage{2, {"d@example.com"}, "hello\r\n", "sender@example.org", expires},
    });
    const auto bounce = ids[0];
    const auto hold = ids[1];
    const auto discard = ids[2];
    h.drain->pause(true); // the mailstore is unreachable; expiry still runs
    h.drain->start();
    h.run_turns(3);
    CHECK(h.spool.size() == 3);
    h.clock.advance_ms(kExpiryIntervalMs);
    REQUIRE(h.run_until([&] { return !h.spool.contains(bounce) && !h.spool.contains(discard); }));
    REQUIRE(h.spool.contains(hold));
    CHECK(h.spool.env(hold).held);
    CHECK((h.spool.env(hold).flags & spool::kFlagExpiredHold) != 0);
    REQUIRE(h.dsn_calls.size() == 1);
    CHECK(h.dsn_calls[0].id == bounce);
    CHECK(h.dsn_calls[0].indexes == std::vector<std::uint32_t>{0, 1});
    REQUIRE(h.run_until([&] { return h.snap().expired >= 3; })); // counted after the commit
    CHECK(h.snap().expired == 3);
    CHECK(h.store->attempts == 0);
}

TEST_CASE("mail of a class no longer configured is held when it expires, never bounced") {
    auto config = test_config();
    config.classes.resize(2);
    config.default_class = config.classes[1].name;
    config.classes[1].retention = 1s; // an unknown class expires by the default class's
    config.classes[1].on_expiry = policy::ExpiryAction::kBounce;
    Harness h(config);
    const UnixMillis arrival = h.clock.now_ms();
    const auto orphan = h.spool.add(2, {"a@example.com"}, "hello\r\n", "sender@example.org",
                                    arrival + 1000); // class 2 was removed by a reload
    h.drain->pause(true);
    h.drain->start();
    h.clock.advance_ms(kExpiryIntervalMs);
    REQUIRE(h.run_until([&] { return h.spool.env(orphan).held; }));
    CHECK((h.spool.env(orphan).flags & spool::kFlagExpiredHold) != 0);
    CHECK(h.spool.env(orphan).recipients[0].state == spool::RcptState::kQueued);
    CHECK(h.dsn_calls.empty());
}

TEST_CASE("a reload that changes a retention computes every expiry again from arrival") {
    auto config = test_config();
    config.classes[0].retention = 1s;
    config.classes[1].retention = 1h;
    config.classes[2].retention = 1h;
    Harness h(config);
    const UnixMillis arrival = h.clock.now_ms();
    const auto ids = h.spool.add_all({
        TestMessage{0, {"a@example.com"}, "hello\r\n", "sender@example.org", arrival + 1000},
        TestMessage{1, {"b@example.com"}, "hello\r\n", "sender@example.org", arrival + 3'600'000},
        TestMessage{2, {"c@example.com"}, "hello\r\n", "sender@example.org", arrival + 3'600'000},
    });
    const auto longer = ids[0];  // 1s -> 1h: expires an hour after arrival, not now
    const auto shorter = ids[1]; // 1h -> 1s: expired from arrival, bounced now
    const auto never = ids[2];   // 1h -> 0: never expires
    h.drain->pause(true);
    h.drain->start();
    auto reloaded = config;
    reloaded.classes[0].retention = 1h;
    reloaded.classes[1].retention = 1s;
    reloaded.classes[2].retention = 0s;
    h.drain->reconfigure(std::make_shared<const policy::Config>(reloaded));
    // Well within the hour the old expiry of `shorter` would have taken.
    REQUIRE(h.step_until([&] { return !h.spool.contains(shorter); },
                         static_cast<int>(2 * kExpiryIntervalMs / 1000)));
    REQUIRE(h.dsn_calls.size() == 1);
    CHECK(h.dsn_calls[0].id == shorter);
    REQUIRE(h.run_until([&] { return h.spool.env(never).expires_ms == 0; }));
    REQUIRE(h.run_until([&] { return h.spool.env(longer).expires_ms == arrival + 3'600'000; }));
    CHECK_FALSE(h.spool.env(longer).held);
    CHECK(h.spool.env(longer).recipients[0].state == spool::RcptState::kQueued);
}

TEST_CASE("an expiry the retention of the moment made later is written, not acted on") {
    auto config = test_config();
    config.classes[1].retention = 1h; // the message was stored when it was 1s
    Harness h(config);
    const UnixMillis arrival = h.clock.now_ms();
    const auto id =
        h.spool.add(1, {"a@example.com"}, "hello\r\n", "sender@example.org", arrival + 1000);
    h.drain->pause(true);
    h.drain->start();
    h.clock.advance_ms(kExpiryIntervalMs);
    REQUIRE(h.run_until([&] { return h.spool.env(id).expires_ms == arrival + 3'600'000; }));
    CHECK_FALSE(h.spool.env(id).held);
    CHECK(h.dsn_calls.empty());
    CHECK(h.snap().expired == 0);
}

TEST_CASE("a message still waiting after delay_warning gets one delayed DSN through the relay") {
    auto config = test_config();
    config.bounces.delay_warning = std::chrono::hours(1);
    Harness h(config);
    h.add_relay();
    h.spool.set_meta("paused.lmtp", "1"); // the mailstore is unavailable
    const auto ids = h.spool.add_all({
        TestMessage{1, {"a@example.com", "b@example.com"}, "hello\r\n", "sender@example.org"},
        TestMessage{1, {"c@example.com"}, "hello\r\n", ""}, // the null sender: never
    });
    const auto waiting = ids[0];
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.snap().mailstores[0].paused; }));
    h.clock.advance_ms(3'600'000 - 1000); // not yet an hour
    h.run_turns(3);
    CHECK(h.dsn_calls.empty());
    h.clock.advance_ms(1000);
    REQUIRE(h.run_until([&] { return h.dsn_ids.size() == 1; }));
    CHECK(h.dsn_calls[0].id == waiting);
    CHECK(h.dsn_calls[0].indexes == std::vector<std::uint32_t>{0, 1});
    REQUIRE(h.run_until([&] { return Harness::received(h.relay, h.dsn_ids[0]); }));
    CHECK(h.relay->received[0].recipients == std::vector<std::string>{"sender@example.org"});
    CHECK((h.spool.env(waiting).flags & spool::kFlagDelayWarned) != 0);
    CHECK(h.spool.env(waiting).recipients[0].state == spool::RcptState::kQueued);
    CHECK(h.store->attempts == 0);

    // Another message waits an hour; the walk reaches it after the first, which it does not
    // warn again (and a restart would not: the flag is in the spool).
    const auto later = h.spool.add(1, {"d@example.com"}, "hello\r\n", "other@example.org");
    h.clock.advance_ms(3'600'000);
    REQUIRE(h.run_until([&] { return h.dsn_ids.size() == 2; }));
    CHECK(h.dsn_calls[1].id == later);
    REQUIRE(h.run_until([&] { return h.snap().delay_warnings == 2; }));
    CHECK(h.spool.contains(waiting));
}

TEST_CASE("a backlog older than delay_warning is warned batch after batch, each message once") {
    auto config = test_config();
    config.bounces.delay_warning = std::chrono::hours(1);
    Harness h(config);
    h.spool.set_meta("paused.lmtp", "1"); // the mailstore is unavailable
    // More than two batches, with null senders (never warned) among them.
    const std::size_t n = 3 * kDelayWarningBatch;
    std::vector<TestMessage> backlog;
    for (std::size_t i = 0; i < n; ++i) {
        backlog.push_back(
            TestMessage{1, {"a@example.com"}, "hello\r\n", i % 7 == 3 ? "" : "sender@example.org"});
    }
    const auto ids = h.spool.add_all(std::move(backlog));
    const auto warned = static_cast<std::size_t>(std::count_if(
        ids.begin(), ids.end(), [&](QueueId id) { return !h.spool.env(id).mail_from.empty(); }));
    REQUIRE(warned > kDelayWarningBatch * 2);
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.snap().mailstores[0].paused; }));
    h.clock.advance_ms(3'600'000);
    REQUIRE(h.run_until([&] { return h.snap().delay_warnings == warned; }));
    REQUIRE(h.dsn_calls.size() == warned);
    std::set<QueueId> called;
    for (const DsnCall& c : h.dsn_calls) {
        called.insert(c.id);
    }
    CHECK(called.size() == warned); // one each
    for (const QueueId id : ids) {
        const spool::Envelope env = h.spool.env(id);
        CHECK(((env.flags & spool::kFlagDelayWarned) != 0) == !env.mail_from.empty());
        CHECK(called.count(id) == (env.mail_from.empty() ? 0U : 1U));
    }
    // Every DSN is in the spool (for the lane): spooled with its message's flag.
    CHECK(*h.spool->dsns_after(QueueId{0}, 2 * n) ==
          std::vector<QueueId>(h.dsn_ids.begin(), h.dsn_ids.end()));
    // Nothing more once the walk has passed them all, however long they wait.
    h.clock.advance_ms(3'600'000);
    h.run_turns(3);
    CHECK(h.snap().delay_warnings == warned);
}

TEST_CASE("a delay warning is for waiting mail from a real sender that was not warned yet") {
    policy::BounceConfig bounces;
    bounces.delay_warning = std::chrono::hours(4);
    spool::Envelope env;
    env.mail_from = "sender@example.org";
    env.arrival_ms = 1'700'000'000'000;
    env.recipients.resize(2);
    env.recipients[0].state = spool::RcptState::kDelivered;
    env.recipients[1].state = spool::RcptState::kDeferred;
    const UnixMillis due = env.arrival_ms + 4 * 3'600'000;
    CHECK(delay_warning_candidate(bounces, env, due));
    CHECK_FALSE(delay_warning_candidate(bounces, env, due - 1));
    auto warned = env;
    warned.flags |= spool::kFlagDelayWarned;
    CHECK_FALSE(delay_warning_candidate(bounces, warned, due));
    auto dsn = env;
    dsn.flags |= spool::kFlagDsn;
    CHECK_FALSE(delay_warning_candidate(bounces, dsn, due));
    auto null_sender = env;
    null_sender.mail_from.clear();
    CHECK_FALSE(delay_warning_candidate(bounces, null_sender, due));
    auto done = env;
    done.recipients[1].state = spool::RcptState::kFailed;
    CHECK_FALSE(delay_warning_candidate(bounces, done, due));
    bounces.delay_warning.reset();
    CHECK_FALSE(delay_warning_candidate(bounces, env, due));
}

TEST_CASE("stop lets in-flight deliveries finish and starts no new ones") {
    Harness h;
    h.store->block = true;
    for (int i = 0; i < 20; ++i) {
        h.spool.add(1, {"user" + std::to_string(i) + "@example.com"});
    }
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.store->in_flight == 2; }));
    bool stopped = false;
    h.drain->stop([&] { stopped = true; }, 10s);
    h.run_turns(3);
    CHECK_FALSE(stopped);
    CHECK(h.snap().stopping);
    h.store->block = false;
    REQUIRE(h.run_until([&] { return stopped; }));
    CHECK(h.store->attempts == 2);
    CHECK(h.spool.size() == 18);
    CHECK_FALSE(h.snap().running);
}

TEST_CASE(
    "stop cancels deliveries that outlive the grace period and their recipients stay queued") {
    Harness h;
    h.store->block = true;
    std::vector<QueueId> ids;
    for (int i = 0; i < 5; ++i) {
        ids.push_back(h.spool.add(1, {"user" + std::to_string(i) + "@example.com"}));
    }
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.store->in_flight == 2; }));
    bool stopped = false;
    h.drain->stop([&] { stopped = true; }, 50ms);
    REQUIRE(h.run_until([&] { return stopped; }));
    CHECK(h.store->in_flight == 0);
    CHECK(h.spool.size() == 5);
    for (const auto id : ids) {
        CHECK(h.spool.env(id).recipients[0].state == spool::RcptState::kQueued);
        CHECK(h.spool.env(id).recipients[0].attempts == 0);
    }
    CHECK(h.snap().mailstores[0].breaker == BreakerState::kClosed);
}

TEST_CASE("a null-sender message that fails permanently gets no DSN") {
    Harness h;
    const auto id = h.spool.add(1, {"nobody@example.com"}, "bounce body\r\n", "");
    h.store->script = [](const DeliveryRequest&) {
        DeliveryResult r;
        r.per_recipient = {reply(550, "5.1.1")};
        return r;
    };
    h.drain->start();
    REQUIRE(h.run_until([&] { return !h.spool.contains(id); }));
    CHECK(h.dsn_calls.empty());
    CHECK(h.dsn_ids.empty());
    CHECK(h.spool.size() == 0); // nothing was spooled with the outcome
}

TEST_CASE("reconfigure applies new limits to a running drain") {
    Harness h;
    h.store->block = true;
    for (int i = 0; i < 20; ++i) {
        h.spool.add(1, {"user" + std::to_string(i) + "@example.com"});
    }
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.store->in_flight == 2; }));
    auto config = std::make_shared<policy::Config>(test_config());
    config->drain.max_concurrency = 1;
    h.drain->reconfigure(config);
    REQUIRE(h.run_until([&] { return h.snap().mailstores[0].concurrency_limit == 1; }));
    h.store->max_in_flight = 0; // the two already running were admitted under the old limit
    h.store->block = false;
    REQUIRE(h.run_until([&] { return h.spool.size() == 0; }));
    CHECK(h.store->max_in_flight == 1);
}

namespace {

// A shared budget of `limit` deliveries at once, as a fleet share grants them.
class CappedBudget final : public Budget {
public:
    std::uint32_t limit = 2;
    std::uint32_t running = 0;
    int urgent_started = 0;
    int refusals = 0;
    std::function<void()> wake;

    bool admits(bool /*urgent*/) override {
        refusals += running < limit ? 0 : 1;
        return running < limit;
    }
    void started(bool urgent) override {
        ++running;
        urgent_started += urgent ? 1 : 0;
    }
    void ended(bool /*urgent*/) override { --running; }
    void update(std::uint32_t /*own_limit*/, bool /*store_down*/) override {}
    bool may_probe() override { return true; }
    void probe_done(bool /*ok*/) override {}
    bool recovered_elsewhere() override { return false; }
    void set_wake(std::function<void()> w) override { wake = std::move(w); }
    BudgetStatus status() const override {
        BudgetStatus s;
        s.mode = BudgetMode::kFleet;
        s.concurrency = limit;
        return s;
    }
};

} // namespace

TEST_CASE("a shared budget caps a mailstore's deliveries in flight; more start when it grows") {
    auto config = test_config();
    config.fleet.urgent_class = "urgent"; // class 0: the budget is told which are urgent
    config.drain.initial_concurrency = 8; // the node's own limit: only the budget holds it to 2
    CappedBudget budget; // before the harness: its drain's store uses it until it stops
    Harness h(config);
    CHECK_FALSE(h.drain->set_budget("no such store", budget));
    REQUIRE(h.drain->set_budget("lmtp", budget));
    for (int i = 0; i < 20; ++i) {
        h.spool.add(i % 2 == 0 ? 0 : 1, {"user" + std::to_string(i) + "@example.com"});
    }
    h.store->block = true;
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.store->in_flight == 2; }));
    h.run_turns(3);
    CHECK(h.store->in_flight == 2);
    CHECK(budget.refusals > 0); // it asked: demand the fleet share turns into a sync
    CHECK(h.snap().mailstores[0].budget.concurrency == 2);
    budget.limit = 4;
    budget.wake();
    REQUIRE(h.run_until([&] { return h.store->in_flight == 4; }));
    h.run_turns(3);
    CHECK(h.store->in_flight == 4);
    h.store->block = false;
    REQUIRE(h.run_until([&] { return h.spool.size() == 0; }));
    REQUIRE(h.run_until([&] { return budget.running == 0; }));
    CHECK(h.store->max_in_flight == 4);
    CHECK(budget.urgent_started == 10); // the ten messages of class 0
}

TEST_CASE("a message deleted while it is being delivered does not pause the drain") {
    // One delivery at a time, so the second message waits for the first one's outcome.
    auto config = test_config();
    config.drain.max_concurrency = 1;
    config.drain.initial_concurrency = 1;
    Harness h(config);
    h.store->block = true;
    const auto deleted = h.spool.add(1, {"a@example.com"});
    const auto next = h.spool.add(1, {"b@example.com"});
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.store->in_flight == 1; }));
    h.spool.remove(deleted); // spoolctl delete, from another process
    h.store->block = false;
    // The clock stands still: a local backoff after the outcome write would hold the next
    // delivery back for good, not for a second.
    REQUIRE(h.run_until([&] { return Harness::received(h.store, next); }));
    REQUIRE(h.run_until([&] { return h.spool.size() == 0; }));
    CHECK(h.store->attempts == 2);
}

TEST_CASE("NOTIFY=SUCCESS: a delivery into the mailbox or past a next hop without DSN gets a "
          "success DSN in the outcome's commit; one passed on to a next hop with DSN gets none") {
    Harness h(test_config(), true);
    DeliveryRequest seen; // what the SMTP-like store "other" was asked
    h.other->script = [&](const DeliveryRequest& r) {
        seen = r;
        DeliveryResult res;
        res.handoff = Handoff::kPassedOn;
        res.per_recipient.assign(r.recipients.size(), reply(250, "2.0.0"));
        return res;
    };
    const auto ids = h.spool.add_all({
        TestMessage{1,
                    {"a@example.com", "b@example.net"},
                    "hello\r\n",
                    "sender@example.org",
                    0,
                    0,
                    spool::kNotifySuccess | spool::kNotifyFailure},
        TestMessage{1, {"c@example.com"}, "hello\r\n", "sender@example.org"}, // no NOTIFY
    });
    h.drain->start();
    REQUIRE(h.run_until([&] { return !h.spool.contains(ids[0]) && !h.spool.contains(ids[1]); }));
    // The DSN was spooled in the commit that removed the message, so it was called by now.
    REQUIRE(h.dsn_calls.size() == 1);
    CHECK(h.dsn_calls[0].id == ids[0]);
    CHECK(h.dsn_calls[0].indexes == std::vector<std::uint32_t>{0});
    CHECK(h.dsn_calls[0].handoffs == std::vector<Handoff>{Handoff::kFinal});
    // The next hop got the parameters to report by itself.
    REQUIRE(seen.recipient_dsn.size() == 1);
    CHECK(seen.recipient_dsn[0].notify == (spool::kNotifySuccess | spool::kNotifyFailure));

    // A next hop without DSN: we report "relayed".
    h.other->script = [](const DeliveryRequest& r) {
        DeliveryResult res;
        res.handoff = Handoff::kRelayed;
        res.per_recipient.assign(r.recipients.size(), reply(250, "2.0.0"));
        return res;
    };
    const auto relayed = h.spool.add_all({TestMessage{
        1, {"d@example.net"}, "hello\r\n", "sender@example.org", 0, 0, spool::kNotifySuccess}})[0];
    REQUIRE(h.run_until([&] { return !h.spool.contains(relayed); }));
    REQUIRE(h.dsn_calls.size() == 2);
    CHECK(h.dsn_calls[1].id == relayed);
    CHECK(h.dsn_calls[1].handoffs == std::vector<Handoff>{Handoff::kRelayed});
}

TEST_CASE("a dead shard's mailboxes wait behind one probe while the others drain, breaker closed") {
    auto config = test_config();
    config.drain.retry_min = 10s;
    config.drain.retry_max = 80s;
    Harness h(config);
    constexpr int kUsers = 20;
    constexpr int kDead = 6; // 30%
    constexpr int kPerUser = 5;
    auto user = [](int i) { return "user" + std::to_string(i) + "@example.com"; };
    std::set<std::string> dead;
    for (int i = 0; i < kDead; ++i) {
        dead.insert(user(i));
    }
    std::vector<TestMessage> mail;
    for (int n = 0; n < kPerUser; ++n) {
        for (int i = 0; i < kUsers; ++i) {
            mail.push_back(TestMessage{1, {user(i)}});
        }
    }
    const auto ids = h.spool.add_all(std::move(mail));
    bool shard_down = true;
    int dead_tries = 0;
    std::vector<std::uint64_t> stored; // each delivery's message
    h.store->script = [&](const DeliveryRequest& r) {
        DeliveryResult res;
        for (const auto& rcpt : r.recipients) {
            if (shard_down && dead.contains(rcpt)) {
                ++dead_tries;
                res.per_recipient.push_back(
                    make_reply(451, "4.3.0", "<" + rcpt + "> shard unavailable"));
            } else {
                stored.push_back(r.id.value);
                res.per_recipient.push_back(reply(250, "2.0.0"));
            }
        }
        return res;
    };
    h.drain->start();
    const std::size_t healthy = static_cast<std::size_t>((kUsers - kDead) * kPerUser);
    REQUIRE(h.run_until([&] { return stored.size() == healthy; }));
    REQUIRE(h.run_until([&] { return h.spool.size() == ids.size() - healthy; }));
    // Without moving the clock no probe could have closed an opened breaker again.
    CHECK(h.snap().mailstores[0].breaker == BreakerState::kClosed);
    // Each dead mailbox was tried before its group knew it: at most the messages in flight
    // to it at once (max_per_recipient), never all of its mail.
    CHECK(dead_tries >= kDead);
    CHECK(dead_tries <= kDead * static_cast<int>(config.drain.max_per_recipient));
    CHECK(dead_tries < kDead * kPerUser);
    for (const auto id : ids) {
        if (!h.spool.contains(id)) {
            continue;
        }
        const auto r = h.spool.env(id).recipients[0];
        CHECK(r.state == spool::RcptState::kDeferred);
        CHECK(r.attempts == 0); // no attempt counted toward anything
    }

    // While the shard stays down, the group is retried by one probe at a time.
    const int before_probe = dead_tries;
    REQUIRE(h.step_until([&] { return dead_tries > before_probe; }, 11));
    h.run_turns(3);
    CHECK(dead_tries == before_probe + 1);

    // It comes back: the next probe is answered and releases the rest, each once.
    shard_down = false;
    REQUIRE(h.step_until([&] { return h.spool.size() == 0; }, 60));
    CHECK(stored.size() == ids.size());
    CHECK(std::set<std::uint64_t>(stored.begin(), stored.end()).size() == ids.size());
    CHECK(h.dsn_calls.empty());
    // An opened breaker would have probed the store as the clock moved.
    CHECK(h.store->probes == 0);
    CHECK(h.snap().mailstores[0].breaker == BreakerState::kClosed);
}

TEST_CASE("a dead shard's mail is parked without a delivery slot, even while the store has none") {
    // The oldest mail is all the dead shard's: its first message teaches the drain the group,
    // and as it is refused the fleet's budget closes (a half-open breaker's one trial slot
    // taken, a busy store: the same for parking). The rest of that mail is parked anyway;
    // the healthy message waits for a slot.
    auto config = test_config();
    config.drain.initial_concurrency = 8;
    CappedBudget budget; // before the harness: its drain's store uses it until it stops
    Harness h(config);
    budget.limit = 1;
    REQUIRE(h.drain->set_budget("lmtp", budget));
    const std::vector<QueueId> dead = h.spool.add_all({{1, {"dead@example.com"}},
                                                       {1, {"dead@example.com"}},
                                                       {1, {"dead@example.com"}},
                                                       {1, {"dead@example.com"}},
                                                       {1, {"dead@example.com"}},
                                                       {1, {"dead@example.com"}}});
    const QueueId healthy = h.spool.add(1, {"alive@example.com"});
    int dead_tries = 0;
    h.store->script = [&](const DeliveryRequest& r) {
        DeliveryResult res;
        for (const auto& rcpt : r.recipients) {
            if (rcpt == "dead@example.com") {
                ++dead_tries;
                budget.limit = 0; // no slot from here on
                res.per_recipient.push_back(
                    make_reply(451, "4.3.0", "<" + rcpt + "> shard unavailable"));
            } else {
                res.per_recipient.push_back(reply(250, "2.0.0"));
            }
        }
        return res;
    };
    h.drain->start();
    auto parked = [&] {
        return std::all_of(dead.begin(), dead.end(), [&](QueueId id) {
            return h.spool.env(id).recipients[0].state == spool::RcptState::kDeferred;
        });
    };
    REQUIRE(h.run_until(parked));
    CHECK(dead_tries == 1); // only the first reached the store
    for (const QueueId id : dead) {
        CHECK(h.spool.env(id).recipients[0].attempts == 0);
    }
    h.run_turns(3);
    CHECK_FALSE(Harness::received(h.store, healthy));
    CHECK(budget.running == 0);
    CHECK(h.snap().mailstores[0].breaker == BreakerState::kClosed);

    budget.limit = 1;
    budget.wake();
    REQUIRE(h.run_until([&] { return !h.spool.contains(healthy); }));
    CHECK(Harness::received(h.store, healthy));
    CHECK(dead_tries == 1);
}

TEST_CASE("the oldest mail all a dead shard's: its group's refusals never open the breaker") {
    // The first recipients met are all troubled, more of them than the breaker's window needs
    // to judge the store. Once the first refusal has started the group, the others (dead
    // mailboxes met for the first time, with the same reply) are the group's: the store
    // answered each, so it stays closed and the healthy mail behind drains at once.
    auto config = test_config();
    config.drain.retry_min = 10s;
    config.drain.retry_max = 80s;
    Harness h(config);
    const std::uint32_t dead_users = 2 * BreakerOptions{}.window_samples;
    auto user = [](std::uint32_t i) { return "user" + std::to_string(i) + "@example.com"; };
    std::vector<TestMessage> mail;
    for (std::uint32_t i = 0; i < dead_users; ++i) {
        mail.push_back(TestMessage{1, {user(i)}});
        mail.push_back(TestMessage{1, {user(i)}});
    }
    constexpr std::uint32_t kHealthy = 8;
    for (std::uint32_t i = dead_users; i < dead_users + kHealthy; ++i) {
        mail.push_back(TestMessage{1, {user(i)}});
    }
    const auto ids = h.spool.add_all(std::move(mail));
    int dead_tries = 0;
    std::size_t stored = 0;
    h.store->script = [&](const DeliveryRequest& r) {
        DeliveryResult res;
        for (const auto& rcpt : r.recipients) {
            const bool dead = std::stoul(rcpt.substr(4)) < dead_users;
            dead_tries += dead ? 1 : 0;
            stored += dead ? 0 : 1;
            res.per_recipient.push_back(
                dead ? make_reply(451, "4.3.0", "<" + rcpt + "> shard unavailable")
                     : reply(250, "2.0.0"));
        }
        return res;
    };
    h.drain->start();
    // Without moving the clock an opened breaker would never probe, and nothing healthy would
    // be delivered.
    REQUIRE(h.run_until([&] { return stored == kHealthy; }));
    CHECK(dead_tries >= static_cast<int>(dead_users)); // each dead mailbox met at least once
    CHECK(h.snap().mailstores[0].breaker == BreakerState::kClosed);
    CHECK(h.store->probes == 0);
    REQUIRE(h.run_until([&] { return h.spool.size() == ids.size() - kHealthy; }));
}

TEST_CASE("promotion commits are sized by how long they take, so new mail never waits long "
          "behind one") {
    Harness h(test_config(), false, /*through_faulty=*/true);
    h.spool.set_meta("paused.lmtp", "1"); // only the promotion runs
    constexpr int kDeferred = 1000;
    constexpr std::size_t kMsPerMessage = 1; // what a promotion costs the fake spool's writer
    std::vector<TestMessage> messages;
    for (int i = 0; i < kDeferred; ++i) {
        messages.push_back(TestMessage{1, {"user" + std::to_string(i) + "@example.com"}});
    }
    const auto ids = h.spool.add_all(std::move(messages));
    std::atomic<int> deferring{kDeferred};
    for (const QueueId id : ids) {
        spool::RecipientUpdate u;
        u.state = spool::RcptState::kDeferred;
        u.next_attempt_ms = h.clock.now_ms() + 60'000;
        u.response = "451 4.3.0 try later";
        h.spool->record_outcome(id, {u}, std::nullopt, [&](Status) { --deferring; });
    }
    REQUIRE(h.run_until([&] { return deferring == 0; }));
    const auto deferred = [&] {
        const auto c = h.spool->counters();
        REQUIRE(c);
        return c->messages[1][static_cast<std::size_t>(spool::MsgState::kDeferred)];
    };
    REQUIRE(deferred() == kDeferred);

    std::vector<std::size_t> asked;
    h.faulty.on_promote = [&](std::size_t max) {
        asked.push_back(max);
        h.clock.advance_ms(static_cast<std::int64_t>(max * kMsPerMessage));
    };
    h.clock.advance_ms(60'000); // every deferral is due
    h.drain->start();
    REQUIRE(h.run_until([&] { return deferred() == 0; }));
    // The first commit is small; each later one is sized from the last one's time so it holds
    // the writer (and the new mail queued behind it) about kBulkCommitTargetMs, not the
    // kMaxPromotePerOp x kMsPerMessage a fixed batch would.
    REQUIRE(asked.size() >= 2);
    CHECK(asked[0] == kBulkFirstBatch);
    for (std::size_t i = 1; i < asked.size(); ++i) {
        CHECK(asked[i] * kMsPerMessage <= static_cast<std::size_t>(kBulkCommitTargetMs));
    }
}

TEST_CASE("delay-warning commits are sized by how long they take, as promotion's") {
    auto config = test_config();
    config.bounces.delay_warning = std::chrono::hours(1);
    Harness h(config, false, /*through_faulty=*/true);
    h.spool.set_meta("paused.lmtp", "1"); // the mailstore is unavailable: only warnings run
    const std::size_t n = 3 * kDelayWarningBatch;
    std::vector<TestMessage> backlog;
    for (std::size_t i = 0; i < n; ++i) {
        backlog.push_back(TestMessage{1, {"user" + std::to_string(i) + "@example.com"}});
    }
    h.spool.add_all(std::move(backlog));
    constexpr std::size_t kMsPerMessage = 1; // what a warning costs the fake spool's writer
    std::vector<std::size_t> asked;
    h.faulty.on_delay_warnings = [&](std::size_t batch) {
        asked.push_back(batch);
        h.clock.advance_ms(static_cast<std::int64_t>(batch * kMsPerMessage));
    };
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.snap().mailstores[0].paused; }));
    h.clock.advance_ms(3'600'000);
    REQUIRE(h.run_until([&] { return h.snap().delay_warnings == n; }));
    // The first commit is the pacer's first batch; each later one is sized from the last
    // one's time, so it holds the writer about kBulkCommitTargetMs, not the
    // kDelayWarningBatch x kMsPerMessage a fixed batch would.
    REQUIRE(asked.size() >= 2);
    CHECK(asked[0] == std::min(kBulkFirstBatch, kDelayWarningBatch));
    REQUIRE(kDelayWarningBatch * kMsPerMessage > static_cast<std::size_t>(kBulkCommitTargetMs));
    for (std::size_t i = 1; i < asked.size(); ++i) {
        CHECK(asked[i] * kMsPerMessage <= static_cast<std::size_t>(kBulkCommitTargetMs));
    }
}

TEST_CASE("the recipient sweep runs once the expiry has no batch left, in batches of its own "
          "pacer, until nothing waits") {
    auto config = test_config();
    for (auto& c : config.classes) {
        c.retention = 1s;
        c.on_expiry = policy::ExpiryAction::kDiscard;
    }
    Harness h(config, false, /*through_faulty=*/true);
    h.spool.set_meta("paused.lmtp", "1"); // the mailstore is unavailable: only bulk jobs run
    constexpr std::size_t kMessages = 700;
    std::vector<TestMessage> backlog;
    for (std::size_t i = 0; i < kMessages; ++i) {
        TestMessage m{1, {"user" + std::to_string(i) + "@example.com", "all@example.com"}};
        m.expires_ms = h.clock.now_ms() + 1000;
        backlog.push_back(std::move(m));
    }
    h.spool.add_all(std::move(backlog));
    // What each job costs the fake spool's writer: expiry's batches stay small (several of
    // them), and the order of the submissions shows which job waited for which.
    constexpr std::size_t kMsPerExpiry = 1;
    std::vector<std::pair<char, std::size_t>> submitted;
    h.faulty.on_expire = [&](std::size_t n) {
        submitted.emplace_back('e', n);
        h.clock.advance_ms(static_cast<std::int64_t>(n * kMsPerExpiry));
    };
    h.faulty.on_sweep = [&](std::size_t max) { submitted.emplace_back('s', max); };
    const auto pending = [&] {
        const auto n = h.spool->removed_recipients_pending();
        REQUIRE(n.has_value());
        return *n;
    };
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.snap().mailstores[0].paused; }));
    h.clock.advance_ms(kExpiryIntervalMs); // every retention has run out; the expiry looks
    REQUIRE(h.run_until([&] { return h.spool.size() == 0; }));
    // Every removal left its recipient-index entries behind; the sweep deletes them.
    REQUIRE(h.step_until([&] { return pending() == 0; }));
    CHECK(h.spool->recipient_after("all@example.com", QueueId{0}, 10)->empty());

    const auto first_sweep = std::find_if(submitted.begin(), submitted.end(),
                                          [](const auto& s) { return s.first == 's'; });
    REQUIRE(first_sweep != submitted.end());
    const auto expiries = std::count_if(submitted.begin(), submitted.end(),
                                        [](const auto& s) { return s.first == 'e'; });
    CHECK(expiries >= 3);
    // No sweep before the expiry's last batch: it waits while a bulk job has work.
    CHECK(std::none_of(first_sweep, submitted.end(), [](const auto& s) { return s.first == 'e'; }));
    CHECK(first_sweep->second == kBulkFirstBatch);
    std::size_t swept_max = 0;
    for (auto it = first_sweep; it != submitted.end(); ++it) {
        swept_max += it->second;
    }
    CHECK(swept_max >= kMessages);
}

TEST_CASE("the recipient sweep waits while promotion or delay warnings have work") {
    auto config = test_config();
    config.bounces.delay_warning = std::chrono::hours(1);
    Harness h(config, false, /*through_faulty=*/true);
    h.spool.set_meta("paused.lmtp", "1");
    // Entries waiting for the sweep: messages removed by hand.
    const auto removed = h.spool.add_all(
        {TestMessage{1, {"gone@example.com"}}, TestMessage{1, {"gone@example.com"}}});
    for (const QueueId id : removed) {
        REQUIRE(h.spool->wait([&](spool::Done d) { h.spool->remove(id, std::move(d)); }));
    }
    constexpr std::size_t kWarnings = 3 * kDelayWarningBatch;
    std::vector<TestMessage> backlog;
    for (std::size_t i = 0; i < kWarnings; ++i) {
        backlog.push_back(TestMessage{1, {"user" + std::to_string(i) + "@example.com"}});
    }
    h.spool.add_all(std::move(backlog));
    std::vector<char> submitted;
    h.faulty.on_delay_warnings = [&](std::size_t n) {
        submitted.push_back('w');
        h.clock.advance_ms(static_cast<std::int64_t>(n)); // 1 ms a warning: small batches
    };
    h.faulty.on_sweep = [&](std::size_t) { submitted.push_back('s'); };
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.snap().mailstores[0].paused; }));
    h.clock.advance_ms(3'600'000); // every message is due its warning at once
    REQUIRE(h.run_until([&] { return h.snap().delay_warnings == kWarnings; }));
    REQUIRE(h.step_until([&] { return *h.spool->removed_recipients_pending() == 0; }));
    const auto first_sweep = std::find(submitted.begin(), submitted.end(), 's');
    REQUIRE(first_sweep != submitted.end());
    CHECK(std::count(submitted.begin(), submitted.end(), 'w') >= 3);
    CHECK(std::find(first_sweep, submitted.end(), 'w') == submitted.end());
}

TEST_CASE("imported mail (a new id, an old arrival) is warned when it is due, not once the mail "
          "queued before it is") {
    auto config = test_config();
    config.bounces.delay_warning = std::chrono::hours(1);
    Harness h(config);
    h.spool.set_meta("paused.lmtp", "1"); // the mailstore is unavailable
    const auto young = h.spool.add(1, {"a@example.com"});
    h.drain->start();
    REQUIRE(h.run_until([&] { return h.snap().mailstores[0].paused; }));
    // Ten minutes on, spoolctl import or xfer brings new ids behind `young`, arrivals three
    // hours before (due then) and 50 minutes before (due ten minutes later, while `young`
    // still has 40 to wait).
    const UnixMillis t0 = h.clock.now_ms();
    const UnixMillis now = t0 + 10 * 60'000;
    const auto imported = h.spool.add_all({
        TestMessage{
            1, {"b@example.com"}, "hello\r\n", "old@example.org", 0, 0, 0, now - 3 * 3'600'000},
        TestMessage{
            1, {"c@example.com"}, "hello\r\n", "mid@example.org", 0, 0, 0, now - 50 * 60'000},
    });
    h.clock.advance_ms(10 * 60'000);
    REQUIRE(h.run_until([&] { return h.dsn_ids.size() == 1; }));
    CHECK(h.dsn_calls[0].id == imported[0]);
    h.clock.advance_ms(10 * 60'000);
    REQUIRE(h.run_until([&] { return h.dsn_ids.size() == 2; }));
    CHECK(h.dsn_calls[1].id == imported[1]);
    CHECK((h.spool.env(young).flags & spool::kFlagDelayWarned) == 0);
    // `young` is warned at its hour; nothing twice.
    h.clock.advance_ms(t0 + 3'600'000 - h.clock.now_ms());
    REQUIRE(h.run_until([&] { return h.dsn_ids.size() == 3; }));
    CHECK(h.dsn_calls[2].id == young);
    REQUIRE(h.run_until([&] { return h.snap().delay_warnings == 3; }));
    h.clock.advance_ms(3'600'000);
    h.run_turns(3);
    CHECK(h.snap().delay_warnings == 3);
}

TEST_CASE("a delivery frees its store slot once the store answered; its message is not picked "
          "again before its outcome commits, and none starts while max_concurrency outcomes wait") {
    auto config = test_config();
    config.drain.max_concurrency = 2;
    config.drain.initial_concurrency = 2;
    Harness h(config, false, true);
    for (const char* r : {"a@example.com", "b@example.com", "c@example.com", "d@example.com"}) {
        (void)h.spool.add(0, {r});
    }
    h.faulty.hold_outcomes = true;
    h.store->block = true;
    h.drain->start();
    // Two slots: the first two messages are in the store, the others wait for a slot.
    REQUIRE(h.run_until([&] { return h.store->in_flight == 2; }));
    CHECK(h.snap().mailstores[0].in_flight == 2);

    // The store answers them. The first answer frees its slot for the third message although
    // its outcome is not committed; the second makes two outcomes waiting (max_concurrency),
    // so the fourth does not start, though both slots are free once the third is answered.
    h.store->block = false;
    REQUIRE(h.run_until([&] { return h.faulty.held_outcomes() == 3; }));
    h.run_turns(3);
    CHECK(h.store->received.size() == 3); // none of the three picked again, the fourth waits
    CHECK(h.faulty.held_outcomes() == 3);
    CHECK(h.snap().mailstores[0].in_flight == 0);
    CHECK(h.spool.size() == 4);

    h.faulty.release_outcomes();
    REQUIRE(h.run_until([&] { return h.spool.size() == 0 && h.snap().messages_delivered == 4; }));
    CHECK(h.store->received.size() == 4);
    std::set<std::uint64_t> ids;
    for (const auto& r : h.store->received) {
        CHECK(ids.insert(r.id.value).second);
    }
    CHECK(h.snap().mailstores[0].in_flight == 0);
}
