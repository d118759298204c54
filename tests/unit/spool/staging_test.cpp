#include <doctest/doctest.h>

#include <random>

#include "spool/bodies.hpp"
#include "spool_test_support.hpp"

namespace spoold::spool {
using test::check_consistent;
using test::make_message;
using test::open_spool;
using test::options_for;
using test::TempDir;

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

TEST_CASE("a head given at enqueue goes in front of the staged chunks and of a fresh body") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    // Staged: the head (a header section edited after the body was staged) comes first.
    const QueueId id = spool->new_id();
    const std::string staged(300 * 1024, 's');
    REQUIRE(spool->wait([&](Done d) { spool->append_staged(id, staged, std::move(d)); }));
    const std::string head = "Received: x\r\nX-Added: after staging\r\n" + std::string(9000, 'h');
    NewMessage m = make_message(*spool, 0, 1, "tail");
    m.envelope.id = id;
    m.head = head;
    REQUIRE(spool->wait([&](Done d) { spool->enqueue_staged(m, std::move(d)); }));
    CHECK((*spool->get(id))->size == head.size() + staged.size() + 4);
    CHECK(test::read_whole_body(*spool, id) == head + staged + "tail");
    CHECK(test::read_whole_body(*spool, id, 1) == head + staged + "tail"); // chunk by chunk
    // Not staged: head then body.
    NewMessage plain = make_message(*spool, 0, 1, "body\r\n");
    plain.head = "Subject: plain\r\n";
    REQUIRE(test::enqueue_sync(*spool, plain));
    CHECK(test::read_whole_body(*spool, plain.envelope.id) == "Subject: plain\r\nbody\r\n");
    check_consistent(*spool);
}

TEST_CASE("a head that would run into the staged chunks is refused and nothing is stored") {
    TempDir dir;
    FakeClock clock;
    auto options = options_for(dir, clock);
    options.body_chunk_bytes = 8; // so that a small head needs more chunks than there is room
    auto spool = open_spool(options);
    const QueueId id = spool->new_id();
    REQUIRE(spool->wait([&](Done d) { spool->append_staged(id, "staged", std::move(d)); }));
    NewMessage m = make_message(*spool, 0, 1, "");
    m.envelope.id = id;
    m.head = std::string(std::size_t{kStagedFirstChunk} * 8 + 1, 'h');
    const auto refused = spool->wait([&](Done d) { spool->enqueue_staged(m, std::move(d)); });
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().kind == ErrorKind::kInvalid);
    CHECK_FALSE(spool->get(id)->has_value());
    m.head.resize(std::size_t{kStagedFirstChunk} * 8); // exactly fills the room: fine
    REQUIRE(spool->wait([&](Done d) { spool->enqueue_staged(m, std::move(d)); }));
    CHECK(test::read_whole_body(*spool, id) == m.head + "staged");
    check_consistent(*spool);
}

TEST_CASE("staging is refused for an id already in the spool and for no id") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    NewMessage m = make_message(*spool, 0, 1, "stored");
    REQUIRE(test::enqueue_sync(*spool, m));
    auto taken =
        spool->wait([&](Done d) { spool->append_staged(m.envelope.id, "x", std::move(d)); });
    REQUIRE_FALSE(taken.has_value());
    CHECK(taken.error().kind == ErrorKind::kInternal);
    auto none = spool->wait([&](Done d) { spool->append_staged(QueueId{0}, "x", std::move(d)); });
    REQUIRE_FALSE(none.has_value());
    CHECK(none.error().kind == ErrorKind::kInvalid);
    CHECK(test::read_whole_body(*spool, m.envelope.id) == "stored");
    test::check_consistent(*spool);
}

} // namespace spoold::spool
