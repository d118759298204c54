#include <doctest/doctest.h>

#include "drain/health.hpp"
#include "fake_mailstore.hpp"

using namespace spoold;
using namespace spoold::drain;
using spoold::drain::test::FakeMailstore;

namespace {

policy::Config config() {
    policy::Config c;
    c.drain.breaker_failures = 2;
    c.drain.initial_concurrency = 4;
    c.drain.max_concurrency = 8;
    return c;
}

DeliveryResult ok() {
    DeliveryResult r;
    r.per_recipient = {make_reply(250, "2.0.0", "ok")};
    return r;
}

DeliveryResult trouble(int code, const char* enhanced) {
    DeliveryResult r;
    r.session_reply = make_reply(code, enhanced, "lost");
    r.mailstore_trouble = true;
    return r;
}

} // namespace

TEST_CASE("a delivery's result feeds the breaker, or defers a poison message instead") {
    FakeClock clock;
    Store store(std::make_unique<FakeMailstore>("lmtp"), config(), clock);
    PoisonTracker poison;
    const QueueId crash{1};
    const QueueId good{2};
    struct Row {
        const char* what;
        QueueId id;
        DeliveryResult result;
        bool poison;
        BreakerState breaker;
    };
    // Two trouble signals open this breaker; the poison message's strikes, counted only
    // across the store's proof of health, keep it from getting there.
    const Row rows[] = {
        {"trouble: a strike and a signal", crash, trouble(421, "4.4.2"), false,
         BreakerState::kClosed},
        {"others delivered", good, ok(), false, BreakerState::kClosed},
        {"trouble again: the second strike", crash, trouble(421, "4.4.2"), false,
         BreakerState::kClosed},
        {"others delivered", good, ok(), false, BreakerState::kClosed},
        {"the third strike: poison, no signal", crash, trouble(554, "5.4.0"), true,
         BreakerState::kClosed},
        {"others delivered", good, ok(), false, BreakerState::kClosed},
        {"still poison", crash, trouble(421, "4.4.2"), true, BreakerState::kClosed},
        {"trouble from another message opens it", good, trouble(421, "4.4.2"), false,
         BreakerState::kClosed},
        {"and again", good, trouble(421, "4.4.2"), false, BreakerState::kOpen},
    };
    for (const Row& row : rows) {
        CAPTURE(row.what);
        DeliveryResult result = row.result;
        CHECK(weigh_result(store, 0, poison, row.id, clock.now_ms(), result, 0) == row.poison);
        CHECK(store.breaker().state() == row.breaker);
        if (row.poison) {
            // Its own temporary failure now: no trouble, and never a permanent reply.
            CHECK_FALSE(result.mailstore_trouble);
            REQUIRE(result.session_reply);
            CHECK(result.session_reply->transient());
        } else {
            CHECK(result.mailstore_trouble == row.result.mailstore_trouble);
        }
    }
}

TEST_CASE("trouble while the breaker is half-open is the store's, never a strike") {
    FakeClock clock;
    Store store(std::make_unique<FakeMailstore>("lmtp"), config(), clock);
    PoisonTracker poison;
    const QueueId id{1};
    DeliveryResult t1 = trouble(421, "4.4.2");
    DeliveryResult t2 = trouble(421, "4.4.2");
    (void)weigh_result(store, 0, poison, id, clock.now_ms(), t1, 0);
    (void)weigh_result(store, 0, poison, QueueId{2}, clock.now_ms(), t2, 0);
    REQUIRE(store.breaker().state() == BreakerState::kOpen);
    clock.advance_ms(10 * 60 * 1000);
    store.breaker().on_probe_started();
    store.breaker().on_probe_result(true);
    REQUIRE(store.breaker().state() == BreakerState::kHalfOpen);
    poison.delivered(QueueId{3}, 0); // health, so a strike would count
    DeliveryResult t3 = trouble(421, "4.4.2");
    CHECK_FALSE(weigh_result(store, 0, poison, id, clock.now_ms(), t3, 0));
    CHECK(store.breaker().state() == BreakerState::kOpen);
    CHECK(t3.mailstore_trouble);
}
