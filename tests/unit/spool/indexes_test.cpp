#include <doctest/doctest.h>

#include <limits>
#include <string>
#include <vector>

#include "spool/indexes.hpp"
#include "spool/record.hpp"
#include "spool_test_support.hpp"

namespace spoold::spool {
using record::IndexFacts;

namespace {

constexpr std::size_t kAll = std::numeric_limits<std::size_t>::max();

IndexFacts facts(std::uint64_t id, ClassId klass, MsgState state, UnixMillis due,
                 UnixMillis expires, std::uint64_t size) {
    IndexFacts f;
    f.id = QueueId{id};
    f.klass = klass;
    f.state = state;
    f.due = due;
    f.expires = expires;
    f.in_expiry = expires != 0;
    f.size = size;
    return f;
}

struct Fixture {
    test::TempDir dir;
    test::RawEnv raw = test::open_raw(dir.sub("env"));
    Indexes indexes{raw.tables};

    void apply(const std::function<Status(lmdb::WriteTxn&)>& fn) {
        test::write_txn(*raw.env, [&](lmdb::WriteTxn& txn) { REQUIRE(fn(txn)); });
    }
    lmdb::ReadTxn read() {
        auto txn = raw.env->begin_read();
        REQUIRE(txn.has_value());
        return std::move(*txn);
    }
};

std::vector<QueueId> ids(const Result<std::vector<TimedId>>& entries) {
    REQUIRE(entries.has_value());
    std::vector<QueueId> out;
    for (const TimedId& e : *entries) {
        out.push_back(e.id);
    }
    return out;
}

} // namespace

TEST_CASE("a message is in exactly the indexes its facts call for, and counted once") {
    Fixture fx;
    const IndexFacts ready = facts(10, 2, MsgState::kReady, 0, 5'000, 100);
    const IndexFacts deferred = facts(11, 2, MsgState::kDeferred, 3'000, 0, 40);
    const IndexFacts held = facts(12, 3, MsgState::kHeld, 0, 4'000, 7);
    fx.apply([&](lmdb::WriteTxn& txn) -> Status {
        SPOOLD_CHECK(fx.indexes.add(txn, ready));
        SPOOLD_CHECK(fx.indexes.add(txn, deferred));
        return fx.indexes.add(txn, held);
    });
    auto txn = fx.read();
    CHECK(*fx.indexes.ready_after(txn, 2, QueueId{0}, kAll) == std::vector<QueueId>{ready.id});
    CHECK(fx.indexes.ready_after(txn, 3, QueueId{0}, kAll)->empty());
    CHECK(ids(fx.indexes.due(txn, 2'999, kAll)).empty());
    CHECK(ids(fx.indexes.due(txn, 3'000, kAll)) == std::vector<QueueId>{deferred.id});
    // Expiry order is by time, whatever the ids.
    CHECK(ids(fx.indexes.expired(txn, 10'000, kAll)) == std::vector<QueueId>{held.id, ready.id});
    auto c = fx.indexes.counters(txn);
    REQUIRE(c.has_value());
    CHECK(c->messages[2][static_cast<std::size_t>(MsgState::kReady)] == 1);
    CHECK(c->messages[2][static_cast<std::size_t>(MsgState::kDeferred)] == 1);
    CHECK(c->messages[3][static_cast<std::size_t>(MsgState::kHeld)] == 1);
    CHECK(c->total_bytes() == 147);
}

TEST_CASE("remove takes out what add put in, and clear empties indexes and counters") {
    Fixture fx;
    const IndexFacts a = facts(20, 1, MsgState::kReady, 0, 9'000, 10);
    const IndexFacts b = facts(21, 1, MsgState::kDeferred, 1'000, 9'000, 20);
    fx.apply([&](lmdb::WriteTxn& txn) -> Status {
        SPOOLD_CHECK(fx.indexes.add(txn, a));
        return fx.indexes.add(txn, b);
    });
    fx.apply([&](lmdb::WriteTxn& txn) { return fx.indexes.remove(txn, a); });
    {
        auto txn = fx.read();
        CHECK(fx.indexes.ready_after(txn, 1, QueueId{0}, kAll)->empty());
        CHECK(ids(fx.indexes.expired(txn, 9'000, kAll)) == std::vector<QueueId>{b.id});
        CHECK(fx.indexes.counters(txn)->total_messages() == 1);
        CHECK(fx.indexes.counters(txn)->total_bytes() == 20);
    }
    fx.apply([&](lmdb::WriteTxn& txn) { return fx.indexes.clear(txn); });
    auto txn = fx.read();
    CHECK(ids(fx.indexes.due(txn, 9'000, kAll)).empty());
    CHECK(ids(fx.indexes.expired(txn, 9'000, kAll)).empty());
    CHECK(fx.indexes.counters(txn)->total_messages() == 0);
}

TEST_CASE("ready ids come in id order per class, strictly after the one given") {
    Fixture fx;
    fx.apply([&](lmdb::WriteTxn& txn) -> Status {
        for (const std::uint64_t id : {33U, 31U, 32U}) {
            SPOOLD_CHECK(fx.indexes.add(txn, facts(id, 4, MsgState::kReady, 0, 0, 1)));
        }
        return fx.indexes.add(txn, facts(30, 5, MsgState::kReady, 0, 0, 1));
    });
    auto txn = fx.read();
    CHECK(*fx.indexes.ready_after(txn, 4, QueueId{0}, kAll) ==
          std::vector<QueueId>{QueueId{31}, QueueId{32}, QueueId{33}});
    CHECK(*fx.indexes.ready_after(txn, 4, QueueId{31}, 1) == std::vector<QueueId>{QueueId{32}});
    CHECK(fx.indexes.ready_after(txn, 4, QueueId{std::numeric_limits<std::uint64_t>::max()}, kAll)
              ->empty());
}

TEST_CASE("check names a record without its entry and an entry without its record") {
    Fixture fx;
    const IndexFacts kept = facts(40, 2, MsgState::kReady, 0, 0, 1);
    const IndexFacts lost = facts(41, 2, MsgState::kDeferred, 500, 0, 1);
    const IndexFacts ghost = facts(42, 2, MsgState::kReady, 0, 0, 1);
    fx.apply([&](lmdb::WriteTxn& txn) -> Status {
        SPOOLD_CHECK(fx.indexes.add(txn, kept));
        return fx.indexes.add(txn, ghost);
    });
    std::vector<std::string> problems;
    const Indexes::Problem problem = [&](std::string line) { problems.push_back(line); };
    auto txn = fx.read();
    REQUIRE(fx.indexes.check_record(txn, kept, problem));
    CHECK(problems.empty());
    REQUIRE(fx.indexes.check_record(txn, lost, problem));
    REQUIRE(problems.size() == 1);
    CHECK(problems[0] ==
          "record " + lost.id.text() + ": deferred at 500 but not in the deferred index");

    problems.clear();
    std::uint64_t entries = 0;
    const Indexes::FactsOf facts_of = [&](QueueId id) -> Result<std::optional<IndexFacts>> {
        if (id == kept.id) {
            return std::optional<IndexFacts>{kept};
        }
        return std::optional<IndexFacts>{};
    };
    REQUIRE(fx.indexes.check_entries(txn, facts_of, problem, entries));
    CHECK(entries == 2);
    REQUIRE(problems.size() == 1);
    CHECK(problems[0] == "ready index: class 2 id " + ghost.id.text() + " has no record");
}

TEST_CASE("recipient entries are one per address, domain first, with +tag forms after the box") {
    Fixture fx;
    record::RecipientFacts r1;
    r1.addresses = {"alice+news@x.example", "alice@x.example", "bob@y.example"};
    r1.ready_domains = {"x.example", "y.example"};
    record::RecipientFacts r2;
    r2.addresses = {"alice@x.example"};
    const MessageFacts a(facts(50, 1, MsgState::kReady, 0, 0, 1), r1);
    const MessageFacts b(facts(51, 1, MsgState::kHeld, 0, 0, 1), r2);
    fx.apply([&](lmdb::WriteTxn& txn) -> Status {
        SPOOLD_CHECK(fx.indexes.add(txn, a));
        return fx.indexes.add(txn, b);
    });
    auto txn = fx.read();
    const auto page = [&](const std::string& prefix) {
        auto p = fx.indexes.recipient_page(txn, prefix, {}, kAll);
        REQUIRE(p.has_value());
        CHECK(p->resume.empty());
        return p->ids;
    };
    CHECK(page(record::rcpt_prefix("alice@x.example")) ==
          std::vector<QueueId>{QueueId{50}, QueueId{51}});
    CHECK(page(record::rcpt_tag_prefix("alice@x.example", '+')) ==
          std::vector<QueueId>{QueueId{50}});
    CHECK(page(record::rcpt_prefix("bob@y.example")) == std::vector<QueueId>{QueueId{50}});
    CHECK(page(record::rcpt_prefix("bob@x.example")).empty());
    // Only the ready message is in the ready-by-domain index.
    CHECK(*fx.indexes.ready_domains(txn, 1, {}, kAll) ==
          std::vector<std::string>{"x.example", "y.example"});
    CHECK(*fx.indexes.ready_in_domain(txn, 1, "x.example", QueueId{0}, kAll) ==
          std::vector<QueueId>{QueueId{50}});
    // One page at a time, resuming after the last key read.
    auto first = fx.indexes.recipient_page(txn, record::rcpt_prefix("alice@x.example"), {}, 1);
    REQUIRE(first.has_value());
    CHECK(first->ids == std::vector<QueueId>{QueueId{50}});
    REQUIRE_FALSE(first->resume.empty());
    auto second =
        fx.indexes.recipient_page(txn, record::rcpt_prefix("alice@x.example"), first->resume, 1);
    REQUIRE(second.has_value());
    CHECK(second->ids == std::vector<QueueId>{QueueId{51}});
}

TEST_CASE("an update changes only the entries and counters that differ") {
    Fixture fx;
    record::RecipientFacts both;
    both.addresses = {"a@one.example", "b@two.example"};
    both.ready_domains = {"one.example", "two.example"};
    record::RecipientFacts second = both;
    second.ready_domains = {"two.example"};
    const MessageFacts before(facts(60, 2, MsgState::kReady, 0, 7'000, 30), both);
    const MessageFacts partly(facts(60, 2, MsgState::kReady, 0, 7'000, 30), second);
    record::RecipientFacts none = both;
    none.ready_domains.clear();
    const MessageFacts deferred(facts(60, 2, MsgState::kDeferred, 4'000, 7'000, 30), none);
    fx.apply([&](lmdb::WriteTxn& txn) { return fx.indexes.add(txn, before); });
    fx.apply([&](lmdb::WriteTxn& txn) { return fx.indexes.update(txn, before, partly); });
    {
        auto txn = fx.read();
        CHECK(fx.indexes.ready_in_domain(txn, 2, "one.example", QueueId{0}, kAll)->empty());
        CHECK(fx.indexes.ready_in_domain(txn, 2, "two.example", QueueId{0}, kAll)->size() == 1);
        CHECK(fx.indexes.counters(txn)->messages[2][0] == 1);
    }
    fx.apply([&](lmdb::WriteTxn& txn) { return fx.indexes.update(txn, partly, deferred); });
    auto txn = fx.read();
    CHECK(fx.indexes.ready_after(txn, 2, QueueId{0}, kAll)->empty());
    CHECK(*fx.indexes.ready_domains(txn, 2, {}, kAll) == std::vector<std::string>{});
    CHECK(ids(fx.indexes.due(txn, 4'000, kAll)) == std::vector<QueueId>{QueueId{60}});
    CHECK(ids(fx.indexes.expired(txn, 7'000, kAll)) == std::vector<QueueId>{QueueId{60}});
    CHECK(fx.indexes.recipient_page(txn, record::rcpt_prefix("a@one.example"), {}, kAll)->ids ==
          std::vector<QueueId>{QueueId{60}});
    const auto c = fx.indexes.counters(txn);
    CHECK(c->messages[2][0] == 0);
    CHECK(c->messages[2][1] == 1);
    CHECK(c->total_bytes() == 30);
}

TEST_CASE("check names a record missing from the recipient index and a stray recipient entry") {
    Fixture fx;
    record::RecipientFacts r;
    r.addresses = {"a@one.example"};
    r.ready_domains = {"one.example"};
    const MessageFacts kept(facts(70, 1, MsgState::kReady, 0, 0, 1), r);
    fx.apply([&](lmdb::WriteTxn& txn) -> Status {
        SPOOLD_CHECK(fx.indexes.add(txn, kept));
        SPOOLD_CHECK(txn.del(fx.raw.tables.rcpt, record::rcpt_key("a@one.example", QueueId{70})));
        SPOOLD_CHECK(
            txn.put(fx.raw.tables.rcpt, record::rcpt_key("z@one.example", QueueId{70}), {}));
        return {};
    });
    std::vector<std::string> problems;
    const Indexes::Problem problem = [&](std::string line) { problems.push_back(line); };
    auto txn = fx.read();
    REQUIRE(fx.indexes.check_record(txn, kept, problem));
    REQUIRE(problems.size() == 1);
    CHECK(problems[0] == "record " + QueueId{70}.text() +
                             ": not in the recipient index as a@one.example id " +
                             QueueId{70}.text());
    problems.clear();
    std::uint64_t entries = 0;
    const Indexes::FactsOf facts_of = [&](QueueId) -> Result<std::optional<IndexFacts>> {
        return std::optional<IndexFacts>{kept.header};
    };
    const Indexes::RecipientsOf recipients_of =
        [&](QueueId) -> Result<std::optional<record::RecipientFacts>> {
        return std::optional<record::RecipientFacts>{r};
    };
    // One entry per step: the walk resumes from where each step stopped.
    std::optional<EntryCursor> cursor = EntryCursor{};
    int steps = 0;
    while (cursor) {
        auto next =
            fx.indexes.check_entries(txn, facts_of, problem, entries, recipients_of, *cursor, 1);
        REQUIRE(next.has_value());
        cursor = *next;
        ++steps;
    }
    CHECK(entries == 3); // ready, the stray recipient entry, ready-by-domain
    CHECK(steps == 3);   // each step stops at the entry the next one starts with
    REQUIRE(problems.size() == 1);
    CHECK(problems[0] ==
          "recipient index: z@one.example id " + QueueId{70}.text() + " disagrees with its record");
}

} // namespace spoold::spool
