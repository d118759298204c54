#include <doctest/doctest.h>

#include <mutex>
#include <utility>
#include <vector>

#include "spool_test_support.hpp"

namespace spoold::spool {
using test::BatchResult;
using test::enqueue_sync;
using test::expire_sync;
using test::make_message;
using test::open_spool;
using test::options_for;
using test::TempDir;
using test::update;
using test::warn_sync;

namespace {

// What the arrival listener heard, in order.
struct Heard {
    std::mutex mutex;
    std::vector<QueueId> ids;
    std::vector<QueueId> take() {
        const std::lock_guard lock(mutex);
        return std::exchange(ids, {});
    }
};

NewMessage dsn_message(Spool& spool) {
    NewMessage dsn = make_message(spool, 0, 1, "the report");
    dsn.envelope.flags = kFlagDsn;
    return dsn;
}

} // namespace

TEST_CASE("the arrival listener hears of each message a write adds, once it committed, and of "
          "nothing else") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    Heard heard;
    spool->on_arrival([&](QueueId id) {
        const std::lock_guard lock(heard.mutex);
        heard.ids.push_back(id);
    });
    using Ids = std::vector<QueueId>;

    // An enqueue; the same id again fails (a collision): nothing is heard of it.
    const NewMessage first = make_message(*spool, 1, 2, "first");
    REQUIRE(enqueue_sync(*spool, first));
    CHECK(heard.take() == Ids{first.envelope.id});
    CHECK_FALSE(enqueue_sync(*spool, first));
    CHECK(heard.take().empty());

    // A staged message: its chunks add nothing, its enqueue does.
    NewMessage staged = make_message(*spool, 1, 1, "");
    const QueueId staged_id = staged.envelope.id;
    REQUIRE(spool->wait([&](Done d) { spool->append_staged(staged_id, "chunk", std::move(d)); }));
    CHECK(heard.take().empty());
    REQUIRE(spool->wait([&](Done d) { spool->enqueue_staged(std::move(staged), std::move(d)); }));
    CHECK(heard.take() == Ids{staged_id});

    // An outcome with its DSN adds the DSN; one without adds nothing.
    NewMessage bounce = dsn_message(*spool);
    const QueueId bounce_id = bounce.envelope.id;
    REQUIRE(spool->wait([&](Done d) {
        spool->record_outcome(first.envelope.id, {update(0, RcptState::kFailed)}, std::move(bounce),
                              std::move(d));
    }));
    CHECK(heard.take() == Ids{bounce_id});
    REQUIRE(spool->wait([&](Done d) {
        spool->record_outcome(first.envelope.id, {update(1, RcptState::kDelivered)}, std::nullopt,
                              std::move(d));
    }));
    CHECK(heard.take().empty());

    // Expiry: the DSN of an item that committed is heard, that of a skipped item (its
    // message gone) is not.
    const NewMessage expiring = make_message(*spool, 1, 1, "old", clock.now_ms(), clock.now_ms());
    REQUIRE(enqueue_sync(*spool, expiring));
    CHECK(heard.take() == Ids{expiring.envelope.id});
    std::vector<Expiry> expiries(2);
    expiries[0].id = expiring.envelope.id;
    expiries[0].response = "expired";
    expiries[0].dsn = dsn_message(*spool);
    const QueueId expiry_dsn = expiries[0].dsn->envelope.id;
    expiries[1].id = first.envelope.id; // gone: every recipient final
    expiries[1].response = "expired";
    expiries[1].dsn = dsn_message(*spool);
    const BatchResult expired = expire_sync(*spool, std::move(expiries), clock.now_ms());
    REQUIRE(expired.batch);
    REQUIRE(expired.items.size() == 2);
    CHECK(expired.items[0].has_value());
    CHECK_FALSE(expired.items[1].has_value());
    CHECK(heard.take() == Ids{expiry_dsn});

    // A delay warning adds its DSN.
    const NewMessage waiting = make_message(*spool, 1, 1, "waiting");
    REQUIRE(enqueue_sync(*spool, waiting));
    CHECK(heard.take() == Ids{waiting.envelope.id});
    std::vector<DelayWarning> warnings{DelayWarning{waiting.envelope.id, dsn_message(*spool)}};
    const QueueId warning_dsn = warnings[0].dsn.envelope.id;
    const BatchResult warned = warn_sync(*spool, std::move(warnings));
    REQUIRE(warned.batch);
    REQUIRE(warned.items.size() == 1);
    CHECK(warned.items[0].has_value());
    CHECK(heard.take() == Ids{warning_dsn});

    // Writes that add no message are not heard.
    REQUIRE(spool->wait([&](Done d) { spool->set_held(waiting.envelope.id, true, std::move(d)); }));
    REQUIRE(spool->wait([&](Done d) { spool->remove(warning_dsn, std::move(d)); }));
    CHECK(heard.take().empty());

    // Without a listener nothing is called.
    spool->on_arrival({});
    REQUIRE(enqueue_sync(*spool, make_message(*spool, 1, 1, "unheard")));
    CHECK(heard.take().empty());
}

} // namespace spoold::spool
