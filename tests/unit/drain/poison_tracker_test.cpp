#include <doctest/doctest.h>

#include "drain/poison_tracker.hpp"

using namespace spoold;
using namespace spoold::drain;

namespace {

enum class Op { kStrike, kDelivered };

struct Step {
    const char* what;
    Op op;
    QueueId id;
    std::size_t store;
    bool poison; // the verdict of a strike
};

void play(PoisonTracker& t, std::initializer_list<Step> steps) {
    for (const Step& s : steps) {
        CAPTURE(s.what);
        if (s.op == Op::kStrike) {
            CHECK(t.strike(s.id, s.store) == s.poison);
        } else {
            t.delivered(s.id, s.store);
        }
    }
}

const QueueId kMessage{1};
const QueueId kOther{2};

} // namespace

TEST_CASE("strikes count only across proof that the store works for other mail") {
    PoisonTracker t;
    play(t, {
                {"first strike", Op::kStrike, kMessage, 0, false},
                {"trouble again with no health in between", Op::kStrike, kMessage, 0, false},
                {"still none", Op::kStrike, kMessage, 0, false},
                {"another message is delivered: the store works", Op::kDelivered, kOther, 0},
                {"second strike", Op::kStrike, kMessage, 0, false},
                {"health again", Op::kDelivered, kOther, 0},
                {"third strike: poison", Op::kStrike, kMessage, 0, true},
                {"and it stays poison", Op::kStrike, kMessage, 0, true},
            });
}

TEST_CASE("strikes at one store say nothing about another, and a delivery forgets them") {
    PoisonTracker t;
    play(t, {
                {"strike at store 0", Op::kStrike, kMessage, 0, false},
                {"store 0 works", Op::kDelivered, kOther, 0},
                {"second strike at store 0", Op::kStrike, kMessage, 0, false},
                {"store 1 works", Op::kDelivered, kOther, 1},
                {"a strike at store 1 starts afresh", Op::kStrike, kMessage, 1, false},
                {"store 1 works", Op::kDelivered, kOther, 1},
                {"second strike at store 1", Op::kStrike, kMessage, 1, false},
                {"the message itself is delivered", Op::kDelivered, kMessage, 1},
                {"store 1 works", Op::kDelivered, kOther, 1},
                {"its strikes were forgotten", Op::kStrike, kMessage, 1, false},
            });
}

TEST_CASE("a message is suspect at the store where it has strikes, and only there") {
    PoisonTracker t;
    CHECK_FALSE(t.suspect(kMessage, 0));
    (void)t.strike(kMessage, 0);
    CHECK(t.suspect(kMessage, 0));
    CHECK_FALSE(t.suspect(kMessage, 1));
    CHECK_FALSE(t.suspect(kOther, 0));
    t.delivered(kMessage, 0);
    CHECK_FALSE(t.suspect(kMessage, 0));
}

TEST_CASE("beyond its memory the tracker forgets every strike and starts afresh") {
    PoisonTracker t(2);
    (void)t.strike(QueueId{1}, 0);
    (void)t.strike(QueueId{2}, 0);
    CHECK(t.remembered() == 2);
    (void)t.strike(QueueId{2}, 0); // known: no room needed
    CHECK(t.remembered() == 2);
    (void)t.strike(QueueId{3}, 0);
    CHECK(t.remembered() == 1);
    CHECK_FALSE(t.suspect(QueueId{1}, 0));
    CHECK(t.suspect(QueueId{3}, 0));
}
