#include <doctest/doctest.h>

#include <string>

#include "common/metrics.hpp"
#include "fleet/share.hpp"

using namespace spoold;
using namespace spoold::fleet;
using namespace std::chrono_literals;

namespace {

constexpr auto kTtl = 3000ms;

struct Fixture {
    explicit Fixture(ShareLimits limits, std::string store = "store")
        : share(std::move(store), "n1", limits, kTtl, clock) {
        share.set_wake([this] { ++wakes; });
        share.set_poke([this] { ++pokes; });
        share.update(16, false);
    }
    SyncReply reply(std::uint32_t general, std::uint32_t reserve = 0) {
        SyncReply r;
        r.general = general;
        r.reserve = reserve;
        r.live_nodes = 3;
        return r;
    }
    void grant(std::uint32_t general, std::uint32_t reserve = 0) {
        (void)share.request();
        share.on_reply(reply(general, reserve));
    }

    FakeClock clock;
    StoreShare share;
    int wakes = 0;
    int pokes = 0;
};

const ShareLimits kSix{6, 0, 0};

} // namespace

TEST_CASE("until Redis first answers nothing is admitted, and the refusal becomes demand") {
    Fixture f(kSix);
    CHECK_FALSE(f.share.admits(false));
    CHECK(f.pokes == 1);
    CHECK(f.share.sync_due());
    const SyncRequest r = f.share.request();
    CHECK(r.want == 16);
    CHECK(r.used == 0);
    CHECK_FALSE(f.share.sync_due()); // one sync at a time
}

TEST_CASE("granted slots are the limit: general ones for any class, the reserve for urgent") {
    Fixture f(ShareLimits{6, 0, 1});
    f.grant(2, 1);
    CHECK(f.wakes == 1);
    CHECK(f.share.admits(false));
    f.share.started(false);
    CHECK(f.share.admits(false));
    f.share.started(false);
    CHECK_FALSE(f.share.admits(false)); // the third slot is the reserve
    CHECK(f.share.admits(true));
    f.share.started(true);
    CHECK_FALSE(f.share.admits(true));
    f.share.ended(false);
    CHECK(f.share.admits(false));
    CHECK(f.share.status().concurrency == 3);
    CHECK(f.share.status().mode == drain::BudgetMode::kFleet);
}

TEST_CASE("until the reply arrives Redis counts the whole grant as in use") {
    Fixture f(kSix);
    f.grant(3);
    f.share.started(false);
    const SyncRequest r = f.share.request();
    CHECK(r.used == 3);
    CHECK(r.used_general == 3);
}

TEST_CASE("without Redis the share is the limit over the last known live nodes, logged once") {
    Fixture f(ShareLimits{6, 90, 0}, "fallback-store");
    auto& fallbacks = metrics::spoold_metrics().fleet_fallbacks_total.with({"fallback-store"});
    auto& gauge = metrics::spoold_metrics().fleet_fallback.with({"fallback-store"});
    const auto before = fallbacks.value();
    f.grant(2);
    (void)f.share.request();
    f.share.on_failure("unavailable: cannot connect");
    CHECK(fallbacks.value() == before + 1);
    CHECK(gauge.value() == 1);
    const drain::BudgetStatus s = f.share.status();
    CHECK(s.mode == drain::BudgetMode::kFallback);
    CHECK(s.concurrency == 2); // 6 / 3 live nodes
    CHECK(s.rate == doctest::Approx(30));
    CHECK(f.share.may_probe()); // alone now: it probes for itself
    // 30/s starts with one token; 100 ms later there are more, and the concurrency share
    // of 2 is what refuses the third.
    for (int i = 0; i < 2; ++i) {
        CHECK(f.share.admits(false));
        f.share.started(false);
        f.clock.advance_ms(100);
    }
    CHECK_FALSE(f.share.admits(false));
    f.share.ended(false);
    CHECK(f.share.admits(false));
    f.clock.advance_ms(kRetryMs);
    CHECK(f.share.sync_due());
    (void)f.share.request();
    f.share.on_failure("unavailable: cannot connect");
    CHECK(fallbacks.value() == before + 1); // still the same outage
    f.share.set_live_nodes(10);
    CHECK(f.share.status().concurrency == 1); // never zero
    CHECK(f.share.status().rate > 0);
}

TEST_CASE("back from the fallback, the share stays at the fallback size for one lease TTL") {
    Fixture f(kSix);
    f.grant(2);
    (void)f.share.request();
    f.share.on_failure("down");
    f.clock.advance_ms(kRetryMs);
    const SyncRequest r = f.share.request();
    CHECK(r.used == 2); // its fallback share may all be running: Redis adopts it
    f.share.on_reply(f.reply(6));
    CHECK(f.share.status().mode == drain::BudgetMode::kFleet);
    CHECK(f.share.status().concurrency == 2);
    CHECK(metrics::spoold_metrics().fleet_fallback.with({"store"}).value() == 0);
    f.clock.advance_ms(kTtl.count());
    f.grant(6);
    CHECK(f.share.status().concurrency == 6);
}

TEST_CASE("rate tokens are spent one per delivery, asked for when short, and expire unused") {
    Fixture f(ShareLimits{0, 100, 0});
    SyncReply r = f.reply(0);
    r.tokens = 3;
    (void)f.share.request();
    f.share.on_reply(r);
    for (int i = 0; i < 3; ++i) {
        CHECK(f.share.admits(false));
        f.share.started(false);
    }
    CHECK_FALSE(f.share.admits(false));
    CHECK(f.share.sync_due());
    const SyncRequest ask = f.share.request();
    CHECK(ask.tokens >= 1);
    CHECK(ask.tokens <= f.share.burst());
    r.tokens = 2;
    f.share.on_reply(r);
    CHECK(f.share.admits(false));
    f.clock.advance_ms(kTokenLifetimeMs);
    CHECK_FALSE(f.share.admits(false));
}

TEST_CASE("in a fleet only the prober probes, its result is published, a recovery heard once") {
    Fixture f(kSix);
    f.share.update(0, true);
    SyncReply r = f.reply(0);
    r.prober = "n2";
    r.epoch = 5;
    r.state = "down";
    (void)f.share.request();
    f.share.on_reply(r);
    CHECK_FALSE(f.share.may_probe());
    CHECK_FALSE(f.share.recovered_elsewhere()); // the epoch it found is the baseline
    r.prober = "n1";
    (void)f.share.request();
    f.share.on_reply(r);
    CHECK(f.share.may_probe());
    f.share.probe_done(false);
    CHECK(f.share.sync_due());
    CHECK(f.share.request().probe_result == "down");
    f.share.on_reply(r);
    // Another node's probe saw the store answer.
    r.prober = "n2";
    r.epoch = 6;
    r.state = "up";
    (void)f.share.request();
    f.share.on_reply(r);
    CHECK(f.share.recovered_elsewhere());
    CHECK_FALSE(f.share.recovered_elsewhere());
}

TEST_CASE("syncs come when due: renewal, while short of slots, and to give slots back") {
    Fixture f(kSix);
    f.share.update(2, false);
    CHECK_FALSE(f.share.admits(false));
    f.grant(1);
    CHECK_FALSE(f.share.sync_due());
    // Short of slots: a refusal since the last sync asks again soon, not at once.
    CHECK(f.share.admits(false));
    f.share.started(false);
    CHECK_FALSE(f.share.admits(false));
    CHECK_FALSE(f.share.sync_due());
    f.clock.advance_ms(kStarvingSyncMs);
    CHECK(f.share.sync_due());
    f.grant(2);
    // Idle afterwards: the demand fades, the slots it does not use go back.
    f.share.ended(false);
    f.clock.advance_ms(kDemandMemoryMs);
    CHECK(f.share.sync_due());
    const SyncRequest r = f.share.request();
    CHECK(r.want == 0);
    f.share.on_reply(f.reply(0));
    // Renewal, even with nothing to change.
    CHECK_FALSE(f.share.sync_due());
    f.clock.advance_ms(kTtl.count() / 3);
    CHECK(f.share.sync_due());
}

TEST_CASE("while the store is down a node asks every health poll, so it hears a recovery then") {
    Fixture f(kSix);
    f.share.update(16, true);
    CHECK(f.pokes == 1); // the breaker opened: claim the probe or learn who holds it
    SyncReply r = f.reply(0);
    r.prober = "n2";
    r.epoch = 5;
    r.state = "down";
    CHECK(f.share.request().probing);
    f.share.on_reply(r);
    CHECK_FALSE(f.share.may_probe());
    // Far sooner than a renewal (kTtl / 3): the health poll.
    static_assert(kHealthPollMs < kTtl.count() / 3);
    f.clock.advance_ms(kHealthPollMs - 1);
    CHECK_FALSE(f.share.sync_due());
    f.clock.advance_ms(1);
    REQUIRE(f.share.sync_due());
    (void)f.share.request();
    r.epoch = 6;
    r.state = "up";
    const int wakes = f.wakes;
    f.share.on_reply(r);
    CHECK(f.wakes == wakes + 1); // the drain closes its breaker now, not at its next tick
    CHECK(f.share.recovered_elsewhere());
    // Up again: back to renewals only.
    f.share.update(16, false);
    f.clock.advance_ms(kHealthPollMs);
    CHECK_FALSE(f.share.sync_due());
}
