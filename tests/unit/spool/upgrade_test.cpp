#include <doctest/doctest.h>

#include "spool/indexes.hpp"
#include "spool/record.hpp"
#include "spool/store.hpp"
#include "spool/upgrade.hpp"
#include "spool_test_support.hpp"
#include "v1_spool.hpp"
#include "v2_spool.hpp"

namespace spoold::spool {
namespace {

Recipient rcpt(std::string address, RcptState state = RcptState::kQueued, UnixMillis next = 0) {
    Recipient r;
    r.address = std::move(address);
    r.state = state;
    r.next_attempt_ms = next;
    return r;
}

// Messages of every kind a format 1 spool holds: ready in two domains, tagged and mixed-case
// addresses, partly delivered, deferred, held, expiring, and a DSN. Ids from `ids`.
std::vector<NewMessage> v1_messages(Spool& ids, std::size_t extra = 0) {
    std::vector<NewMessage> out;
    const auto add = [&](ClassId klass, std::vector<Recipient> rcpts) -> Envelope& {
        NewMessage m = test::make_message(ids, klass, 0, "body of " + std::to_string(out.size()),
                                          1'700'000'000'000, 1'700'009'000'000);
        m.envelope.recipients = std::move(rcpts);
        out.push_back(std::move(m));
        return out.back().envelope;
    };
    add(0, {rcpt("Alice@One.Example"), rcpt("bob@two.example")});
    add(1, {rcpt("alice+news@one.example"), rcpt("carol@one.example", RcptState::kDelivered)});
    add(1, {rcpt("alice@one.example", RcptState::kDeferred, 1'700'000'500'000)});
    add(2, {rcpt("bob@two.example")}).held = true;
    Envelope& dsn = add(0, {rcpt("sender@remote.example")});
    dsn.flags = kFlagDsn;
    dsn.mail_from.clear();
    for (std::size_t i = 0; i < extra; ++i) {
        add(static_cast<ClassId>(i % 3), {rcpt("user" + std::to_string(i % 7) + "@one.example")});
    }
    return out;
}

std::optional<std::string> meta(const std::string& path, std::string_view key) {
    auto raw = test::open_raw(path);
    auto txn = raw.env->begin_read();
    REQUIRE(txn.has_value());
    auto v = txn->get(raw.tables.meta, key);
    REQUIRE(v.has_value());
    return *v ? std::optional<std::string>(std::string(**v)) : std::nullopt;
}

} // namespace

TEST_CASE("a format 1 spool opens, is upgraded in place to format 3, and its new indexes answer") {
    test::TempDir dir;
    FakeClock clock;
    SpoolOptions o = test::options_for(dir, clock);
    o.max_size_bytes = 64ULL << 20U;
    auto ids = test::open_spool(test::options_for(dir, clock)); // ids only: another spool
    o.path = dir.sub("v1");
    const std::vector<NewMessage> msgs = v1_messages(*ids);
    test::v1::write_spool(o.path, msgs);
    const QueueId ready2 = msgs[0].envelope.id;
    const QueueId tagged = msgs[1].envelope.id;
    const QueueId deferred = msgs[2].envelope.id;
    const QueueId dsn = msgs[4].envelope.id;

    {
        // Read-only (spoolctl while no writer has opened it yet): format 1, still readable,
        // the new indexes not there.
        SpoolOptions ro = o;
        ro.read_only = true;
        auto spool = test::open_spool(ro);
        CHECK(spool->format() == 1);
        CHECK(spool->counters()->total_messages() == msgs.size());
        auto got = spool->get(tagged);
        REQUIRE(got.has_value());
        CHECK((*got)->recipients == msgs[1].envelope.recipients);
        auto page = spool->recipient_page("alice@one.example", AddressForm::kExact, '+', {}, 10);
        REQUIRE_FALSE(page.has_value());
        CHECK(page.error().kind == ErrorKind::kUnavailable);
    }
    CHECK(meta(o.path, "format_version") == "1");

    auto spool = test::open_spool(o);
    CHECK(spool->format() == 3);
    CHECK(test::all_by_recipient(*spool, "ALICE@one.example") ==
          std::vector<QueueId>{ready2, deferred});
    CHECK(test::all_by_recipient(*spool, "alice@one.example", AddressForm::kTagged) ==
          std::vector<QueueId>{tagged});
    CHECK(test::all_by_recipient(*spool, "carol@one.example") == std::vector<QueueId>{tagged});
    // The DSN is filed under the smarthost's key, not its recipient's domain.
    CHECK(*spool->ready_domains(0, 10) ==
          std::vector<std::string>{std::string(record::kDsnDomain), "one.example", "two.example"});
    CHECK(*spool->dsns_after(QueueId{0}, 10) == std::vector<QueueId>{dsn});
    test::check_consistent(*spool);
    auto report = spool->check(true, false);
    REQUIRE(report.has_value());
    CHECK(report->problems.empty());
    CHECK(report->records == msgs.size());
    spool.reset();
    CHECK(meta(o.path, "format_version") == "3");
    CHECK_FALSE(meta(o.path, kUpgradeNextKey).has_value());
}

TEST_CASE("an upgrade cut short resumes where its last step committed") {
    test::TempDir dir;
    FakeClock clock;
    SpoolOptions o = test::options_for(dir, clock);
    auto ids = test::open_spool(test::options_for(dir, clock));
    o.path = dir.sub("v1");
    const std::vector<NewMessage> msgs = v1_messages(*ids, 20);
    test::v1::write_spool(o.path, msgs);
    constexpr std::size_t kStep = 10;
    {
        // What a crash after the first step leaves: the env opened writable (its new tables
        // created), one step committed, nothing closed cleanly in between.
        auto raw = test::open_raw(o.path);
        const Indexes indexes(raw.tables);
        const Bodies bodies(raw.tables, 4080);
        const Store store(raw.tables, indexes, bodies);
        const Upgrader upgrader(*raw.env, raw.tables, store, indexes);
        auto done = upgrader.step(kStep);
        REQUIRE(done.has_value());
        CHECK_FALSE(*done);
        auto txn = raw.env->begin_read();
        REQUIRE(txn.has_value());
        // The step's records are indexed, the next ones not yet; the format still says 1.
        auto first = indexes.recipient_page(*txn, record::rcpt_prefix("alice@one.example"), {}, 10);
        REQUIRE(first.has_value());
        CHECK(first->ids.size() == 2);
        auto later = indexes.recipient_page(*txn, record::rcpt_prefix("user6@one.example"), {}, 10);
        REQUIRE(later.has_value());
        CHECK(later->ids.empty());
    }
    CHECK(meta(o.path, "format_version") == "1");
    CHECK(meta(o.path, kUpgradeNextKey) == record::msg_key(msgs[kStep].envelope.id));

    auto spool = test::open_spool(o);
    CHECK(spool->format() == 3);
    test::check_consistent(*spool);
    auto report = spool->check(true, false);
    REQUIRE(report.has_value());
    CHECK(report->problems.empty());
    CHECK(test::all_by_recipient(*spool, "user6@one.example").size() == 2);
}

TEST_CASE("a format 2 spool opens, is upgraded to format 3 in one meta step, and removals then "
          "wait for the sweep") {
    test::TempDir dir;
    FakeClock clock;
    SpoolOptions o = test::options_for(dir, clock);
    o.max_size_bytes = 64ULL << 20U;
    auto ids = test::open_spool(test::options_for(dir, clock)); // ids only: another spool
    o.path = dir.sub("v2");
    const std::vector<NewMessage> msgs = v1_messages(*ids, 12);
    test::v2::write_spool(o.path, msgs);
    const QueueId ready2 = msgs[0].envelope.id;
    const QueueId deferred = msgs[2].envelope.id;
    const QueueId dsn = msgs[4].envelope.id;
    {
        // Read-only before any writer opened it: format 2, its indexes answer, nothing waits
        // for a sweep (the table comes with the upgrade).
        SpoolOptions ro = o;
        ro.read_only = true;
        auto spool = test::open_spool(ro);
        CHECK(spool->format() == 2);
        CHECK(test::all_by_recipient(*spool, "alice@one.example") ==
              std::vector<QueueId>{ready2, deferred});
        CHECK(*spool->removed_recipients_pending() == 0);
        auto report = spool->check(true, false);
        REQUIRE(report.has_value());
        CHECK(report->problems.empty());
    }
    CHECK(meta(o.path, "format_version") == "2");

    auto spool = test::open_spool(o);
    CHECK(spool->format() == 3);
    CHECK(meta(o.path, "format_version") == "3");
    CHECK_FALSE(meta(o.path, kUpgradeNextKey).has_value());
    test::check_consistent(*spool);
    CHECK(*spool->dsns_after(QueueId{0}, 10) == std::vector<QueueId>{dsn});
    REQUIRE(spool->wait([&](Done d) { spool->remove(ready2, std::move(d)); }));
    CHECK(*spool->removed_recipients_pending() == 1);
    CHECK(test::all_by_recipient(*spool, "alice@one.example") == std::vector<QueueId>{deferred});
    auto report = spool->check(true, false);
    REQUIRE(report.has_value());
    CHECK(report->problems.empty());
    CHECK(report->removed_pending == 1);
    test::check_consistent(*spool);
}

TEST_CASE("a format 2 upgrade cut short after the new table was created completes at the next "
          "open") {
    test::TempDir dir;
    FakeClock clock;
    SpoolOptions o = test::options_for(dir, clock);
    auto ids = test::open_spool(test::options_for(dir, clock));
    o.path = dir.sub("v2");
    const std::vector<NewMessage> msgs = v1_messages(*ids, 3);
    test::v2::write_spool(o.path, msgs);
    {
        // What a crash right after the writable open leaves: rcpt_gone created (its own
        // commit), the format still 2. A step then completes the upgrade without reading a
        // record.
        auto raw = test::open_raw(o.path);
        CHECK(raw.tables.rcpt_gone != kMissingTable);
        CHECK(meta(o.path, "format_version") == "2");
        const Indexes indexes(raw.tables);
        const Bodies bodies(raw.tables, 4080);
        const Store store(raw.tables, indexes, bodies);
        const Upgrader upgrader(*raw.env, raw.tables, store, indexes);
        auto done = upgrader.step(1);
        REQUIRE(done.has_value());
        CHECK(*done);
    }
    CHECK(meta(o.path, "format_version") == "3");
    auto spool = test::open_spool(o);
    CHECK(spool->format() == 3);
    test::check_consistent(*spool);
}

TEST_CASE("format 2 opened writable but crashed before its meta step opens and upgrades") {
    test::TempDir dir;
    FakeClock clock;
    SpoolOptions o = test::options_for(dir, clock);
    auto ids = test::open_spool(test::options_for(dir, clock));
    o.path = dir.sub("v2");
    const std::vector<NewMessage> msgs = v1_messages(*ids, 3);
    test::v2::write_spool(o.path, msgs);
    static_cast<void>(test::open_raw(o.path)); // the table created, nothing more
    CHECK(meta(o.path, "format_version") == "2");
    auto spool = test::open_spool(o);
    CHECK(spool->format() == 3);
    test::check_consistent(*spool);
}

} // namespace spoold::spool
