#include <doctest/doctest.h>

#include "drain/stats.hpp"

using namespace spoold;
using namespace spoold::drain;

namespace {

spool::RecipientUpdate update(spool::RcptState state) {
    spool::RecipientUpdate u;
    u.state = state;
    return u;
}

} // namespace

TEST_CASE("a tally counts delivered, deferred and failed recipients but not queued ones") {
    using S = spool::RcptState;
    struct Row {
        std::vector<S> states;
        std::uint64_t delivered, deferred, failed;
    };
    const Row rows[] = {
        {{}, 0, 0, 0},
        {{S::kDelivered, S::kDelivered}, 2, 0, 0},
        {{S::kDelivered, S::kDeferred, S::kFailed}, 1, 1, 1},
        {{S::kQueued, S::kQueued}, 0, 0, 0}, // the store's trouble: no verdict
        {{S::kFailed, S::kQueued, S::kDeferred, S::kDeferred}, 0, 2, 1},
    };
    for (const Row& row : rows) {
        std::vector<spool::RecipientUpdate> updates;
        for (const S s : row.states) {
            updates.push_back(update(s));
        }
        const Tally t = tally(updates);
        CAPTURE(updates.size());
        CHECK(t.delivered == row.delivered);
        CHECK(t.deferred == row.deferred);
        CHECK(t.failed == row.failed);
    }
}

TEST_CASE("outcomes count in total and per store, a message once per store it reached") {
    FakeClock clock;
    DrainStats stats(clock);
    stats.count_outcomes({{0, Tally{2, 1, 0}}, {1, Tally{0, 0, 1}}});
    stats.count_outcomes({{1, Tally{1, 0, 0}}});
    stats.count_outcomes({{0, Tally{0, 3, 0}}}); // nothing delivered: no message counted
    stats.count_expired(4);
    stats.count_poison();

    DrainSnapshot snap;
    snap.mailstores.resize(2);
    stats.fill(snap);
    CHECK(snap.delivered == 3);
    CHECK(snap.deferred == 4);
    CHECK(snap.failed == 1);
    CHECK(snap.expired == 4);
    CHECK(snap.poison == 1);
    CHECK(snap.messages_delivered == 2);
    struct Row {
        std::uint64_t delivered, deferred, failed, messages;
    };
    const Row want[] = {{2, 4, 0, 1}, {1, 0, 1, 1}};
    for (std::size_t i = 0; i < 2; ++i) {
        CAPTURE(i);
        CHECK(snap.mailstores[i].delivered == want[i].delivered);
        CHECK(snap.mailstores[i].deferred == want[i].deferred);
        CHECK(snap.mailstores[i].failed == want[i].failed);
        CHECK(snap.mailstores[i].messages_delivered == want[i].messages);
    }
}

TEST_CASE("the rate is the messages delivered in the last ten seconds of the clock, per second") {
    FakeClock clock(1'700'000'000'000);
    DrainStats stats(clock);
    const auto rate = [&] {
        DrainSnapshot snap;
        stats.fill(snap);
        return snap.rate_per_s;
    };
    for (int s = 0; s < 10; ++s) {
        for (int i = 0; i < 3; ++i) {
            stats.count_outcomes({{0, Tally{1, 0, 0}}});
        }
        clock.advance_ms(1000);
    }
    // 30 messages over the ten seconds before now; the current second has none yet.
    CHECK(rate() == doctest::Approx(2.7));
    struct Row {
        std::int64_t advance_ms;
        double rate;
    };
    for (const Row& row : {Row{0, 2.7}, Row{1000, 2.4}, Row{5000, 0.9}, Row{10'000, 0.0}}) {
        CAPTURE(row.advance_ms);
        clock.advance_ms(row.advance_ms);
        CHECK(rate() == doctest::Approx(row.rate));
    }
}
