#include <doctest/doctest.h>

#include "spool_test_support.hpp"

namespace spoold::spool {
using test::all_by_recipient;
using test::check_consistent;
using test::enqueue_sync;
using test::make_message;
using test::open_spool;
using test::options_for;
using test::TempDir;
using test::update;

namespace {

NewMessage to(Spool& spool, ClassId klass, std::vector<std::string> addresses) {
    NewMessage m = make_message(spool, klass, 0, "body");
    for (auto& a : addresses) {
        Recipient r;
        r.address = std::move(a);
        m.envelope.recipients.push_back(std::move(r));
    }
    return m;
}

Status outcome(Spool& spool, QueueId id, std::vector<RecipientUpdate> updates,
               std::optional<NewMessage> dsn = std::nullopt) {
    return spool.wait([&](Done d) {
        spool.record_outcome(id, std::move(updates), std::move(dsn), std::move(d));
    });
}

} // namespace

TEST_CASE("a mailbox's mail is found through the recipient index, in any case, +tag forms apart") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    const NewMessage a = to(*spool, 0, {"Alice@Example.NET"});
    const NewMessage b = to(*spool, 1, {"alice+shop@example.net", "carol@example.net"});
    const NewMessage c = to(*spool, 2, {"bob@example.net", "alice@example.net"});
    const NewMessage d = to(*spool, 0, {"alice@other.example", "alicea@example.net"});
    for (const auto& m : {a, b, c, d}) {
        REQUIRE(enqueue_sync(*spool, m));
    }
    const auto ids = [](std::initializer_list<const NewMessage*> ms) {
        std::vector<QueueId> out;
        for (const auto* m : ms) {
            out.push_back(m->envelope.id);
        }
        return out;
    };
    CHECK(all_by_recipient(*spool, "alice@example.net") == ids({&a, &c}));
    CHECK(all_by_recipient(*spool, "ALICE@EXAMPLE.NET", AddressForm::kExact, '+', 1) ==
          ids({&a, &c}));
    CHECK(all_by_recipient(*spool, "alice@example.net", AddressForm::kTagged) == ids({&b}));
    CHECK(all_by_recipient(*spool, "alice@example.net", AddressForm::kTagged, '-').empty());
    CHECK(all_by_recipient(*spool, "carol@example.net") == ids({&b}));
    CHECK(all_by_recipient(*spool, "nobody@example.net").empty());

    // Delivered recipients are history but stay findable until their message leaves.
    REQUIRE(outcome(*spool, c.envelope.id, {update(1, RcptState::kDelivered)}));
    CHECK(all_by_recipient(*spool, "alice@example.net") == ids({&a, &c}));
    REQUIRE(outcome(*spool, c.envelope.id, {update(0, RcptState::kDelivered)}));
    CHECK(all_by_recipient(*spool, "alice@example.net") == ids({&a}));
    REQUIRE(spool->wait([&](Done done) { spool->remove(a.envelope.id, std::move(done)); }));
    CHECK(all_by_recipient(*spool, "alice@example.net").empty());
    check_consistent(*spool);
}

TEST_CASE("ready mail is found by class and recipient domain, and leaves it as it is delivered") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    const NewMessage m = to(*spool, 1, {"a@One.example", "b@two.example", "c@two.example"});
    const NewMessage n = to(*spool, 1, {"d@two.example"});
    const NewMessage held = to(*spool, 1, {"e@three.example"});
    REQUIRE(enqueue_sync(*spool, m));
    REQUIRE(enqueue_sync(*spool, n));
    REQUIRE(enqueue_sync(*spool, held));
    REQUIRE(spool->wait([&](Done d) { spool->set_held(held.envelope.id, true, std::move(d)); }));
    const QueueId mid = m.envelope.id;
    const QueueId nid = n.envelope.id;
    const auto domains = [&](ClassId k) { return *spool->ready_domains(k, 100); };
    const auto in = [&](std::string_view domain, QueueId after = QueueId{0}) {
        return *spool->ready_in_domain(1, domain, after, 100);
    };
    CHECK(domains(1) == std::vector<std::string>{"one.example", "two.example"});
    CHECK(domains(0).empty());
    CHECK(in("ONE.example") == std::vector<QueueId>{mid});
    CHECK(in("two.example") == std::vector<QueueId>{mid, nid});
    CHECK(in("two.example", mid) == std::vector<QueueId>{nid});

    // One domain's recipients delivered, the other's deferred: out of both.
    REQUIRE(outcome(*spool, mid, {update(0, RcptState::kDelivered)}));
    CHECK(in("one.example").empty());
    CHECK(in("two.example") == std::vector<QueueId>{mid, nid});
    const UnixMillis later = clock.now_ms() + 1000;
    REQUIRE(
        outcome(*spool, mid,
                {update(1, RcptState::kDeferred, later), update(2, RcptState::kDeferred, later)}));
    CHECK(in("two.example") == std::vector<QueueId>{nid});
    check_consistent(*spool);
    // Promotion brings it back, under the domain of the recipients that came due.
    REQUIRE(spool->wait(
        [&](Done d) { spool->promote_due(later, spool::kMaxPromotePerOp, std::move(d)); }));
    CHECK(in("two.example") == std::vector<QueueId>{mid, nid});
    // A class change moves it with the class.
    REQUIRE(spool->wait([&](Done d) { spool->set_class(mid, 2, std::move(d)); }));
    CHECK(in("two.example") == std::vector<QueueId>{nid});
    CHECK(*spool->ready_in_domain(2, "two.example", QueueId{0}, 10) == std::vector<QueueId>{mid});
    check_consistent(*spool);
}

TEST_CASE("the DSNs in the spool are found through the DSN index, in every state") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    const NewMessage m = to(*spool, 0, {"user@example.net"});
    REQUIRE(enqueue_sync(*spool, m));
    NewMessage dsn = to(*spool, 0, {"sender@example.org"});
    dsn.envelope.flags = kFlagDsn;
    dsn.envelope.mail_from.clear();
    const QueueId dsn_id = dsn.envelope.id;
    REQUIRE(outcome(*spool, m.envelope.id, {update(0, RcptState::kFailed)}, dsn));
    CHECK(*spool->dsns_after(QueueId{0}, 10) == std::vector<QueueId>{dsn_id});
    CHECK(spool->dsns_after(dsn_id, 10)->empty());
    // Deferred by the smarthost, then held: still a DSN in the spool.
    REQUIRE(outcome(*spool, dsn_id, {update(0, RcptState::kDeferred, clock.now_ms() + 60'000)}));
    REQUIRE(spool->wait([&](Done d) { spool->set_held(dsn_id, true, std::move(d)); }));
    CHECK(*spool->dsns_after(QueueId{0}, 10) == std::vector<QueueId>{dsn_id});
    check_consistent(*spool);
    REQUIRE(outcome(*spool, dsn_id, {update(0, RcptState::kDelivered)}));
    CHECK(spool->dsns_after(QueueId{0}, 10)->empty());
    check_consistent(*spool);
}

} // namespace spoold::spool
