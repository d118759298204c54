#include <doctest/doctest.h>

#include <atomic>

#include "spool_test_support.hpp"

namespace spoold::spool {
using test::check_consistent;
using test::make_message;
using test::open_spool;
using test::TempDir;

TEST_CASE("a tiny map reaches spool-full cleanly and works again after deletes") {
    TempDir dir;
    FakeClock clock;
    SpoolOptions o;
    o.path = dir.sub("spool");
    o.max_size_bytes = 1ULL << 20U;
    o.clock = &clock;
    auto spool = open_spool(o);

    std::vector<QueueId> stored;
    Error last_error;
    for (int i = 0; i < 1000; ++i) {
        NewMessage m =
            make_message(*spool, static_cast<ClassId>(i % 3), 1, std::string(10 * 1024, 'f'));
        const QueueId id = m.envelope.id;
        auto st = test::enqueue_sync(*spool, std::move(m));
        if (!st) {
            last_error = st.error();
            break;
        }
        stored.push_back(id);
    }
    REQUIRE(last_error.kind == ErrorKind::kSpoolFull);
    REQUIRE(stored.size() > 10);
    check_consistent(*spool);

    // A burst in one batch while full: every op is answered, each ok or spool-full, with
    // state changes still applied.
    constexpr int kBurst = 40;
    std::atomic<int> answered{0};
    std::atomic<int> full{0};
    std::atomic<int> other{0};
    for (int i = 0; i < kBurst; ++i) {
        auto count = [&](const Status& st) {
            if (!st) {
                (st.error().kind == ErrorKind::kSpoolFull ? full : other) += 1;
            }
            ++answered;
        };
        if (i % 4 == 0) {
            spool->set_held(stored[static_cast<std::size_t>(i)], true, count);
        } else {
            spool->enqueue(make_message(*spool, 0, 1, std::string(10 * 1024, 'g')), count);
        }
    }
    REQUIRE(test::eventually([&] { return answered.load() == kBurst; }));
    CHECK(other.load() == 0);
    CHECK(full.load() > 0);
    check_consistent(*spool);

    for (std::size_t i = 0; i < stored.size(); i += 2) {
        auto st = spool->wait([&](Done d) { spool->remove(stored[i], std::move(d)); });
        REQUIRE_MESSAGE(st.has_value(), st.error().describe());
    }
    for (int i = 0; i < 5; ++i) {
        auto st =
            test::enqueue_sync(*spool, make_message(*spool, 1, 1, std::string(10 * 1024, 'h')));
        REQUIRE_MESSAGE(st.has_value(), st.error().describe());
    }
    check_consistent(*spool);
    auto space = spool->space();
    REQUIRE(space.has_value());
    CHECK(space->map_size == o.max_size_bytes);
    CHECK(space->used_bytes <= space->map_size);
}

} // namespace spoold::spool
