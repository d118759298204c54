#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>

#include "spool/check.hpp"
#include "spool/indexes.hpp"
#include "spool/lmdb/lmdb.hpp"
#include "spool/record.hpp"
#include "spool/store.hpp"
#include "spool_test_support.hpp"

namespace spoold::spool {
using test::enqueue_sync;
using test::make_message;
using test::open_spool;
using test::options_for;
using test::TempDir;

namespace {

NewMessage message_to(Spool& spool, std::vector<std::string> addresses, UnixMillis expires = 0) {
    NewMessage m = make_message(spool, 1, 0, "hello\r\n", 1'700'000'000'000, expires);
    for (auto& a : addresses) {
        Recipient r;
        r.address = std::move(a);
        m.envelope.recipients.push_back(std::move(r));
    }
    return m;
}

QueueId add(Spool& spool, std::vector<std::string> addresses, UnixMillis expires = 0) {
    NewMessage m = message_to(spool, std::move(addresses), expires);
    const QueueId id = m.envelope.id;
    REQUIRE(enqueue_sync(spool, std::move(m)));
    return id;
}

std::uint64_t pending(Spool& spool) {
    auto n = spool.removed_recipients_pending();
    REQUIRE(n.has_value());
    return *n;
}

std::size_t sweep(Spool& spool, std::size_t max) {
    std::atomic<bool> done = false;
    Result<std::size_t> got = 0;
    spool.sweep_removed_recipients(max, [&](Result<std::size_t> n) {
        got = std::move(n);
        done = true;
    });
    REQUIRE(test::eventually([&] { return done.load(); }));
    REQUIRE(got.has_value());
    return *got;
}

// Every key of the recipient index, as stored.
std::vector<std::string> rcpt_keys(const std::string& path) {
    auto raw = test::open_raw(path);
    auto txn = raw.env->begin_read();
    REQUIRE(txn.has_value());
    std::vector<std::string> keys;
    REQUIRE(txn->scan(raw.tables.rcpt, {}, [&](std::string_view k, std::string_view) {
        keys.emplace_back(k);
        return true;
    }));
    return keys;
}

bool has_key(const std::vector<std::string>& keys, std::string_view address, QueueId id) {
    return std::find(keys.begin(), keys.end(), record::rcpt_key(address, id)) != keys.end();
}

} // namespace

TEST_CASE("a removed message leaves its recipient-index entries for the sweep; readers skip "
          "them") {
    TempDir dir;
    FakeClock clock;
    const SpoolOptions o = options_for(dir, clock);
    auto spool = open_spool(o);
    const UnixMillis now = clock.now_ms();
    const QueueId removed = add(*spool, {"alice@one.example", "Bob@two.example"});
    const QueueId delivered = add(*spool, {"alice@one.example"});
    const QueueId expired = add(*spool, {"alice+news@one.example"}, now - 1);
    const QueueId kept = add(*spool, {"alice@one.example", "carol@one.example"});
    CHECK(pending(*spool) == 0);

    // Every way out of the spool: removal, the last recipient delivered, expiry.
    REQUIRE(spool->wait([&](Done d) { spool->remove(removed, std::move(d)); }));
    REQUIRE(spool->wait([&](Done d) {
        spool->record_outcome(delivered, {test::update(0, RcptState::kDelivered)}, std::nullopt,
                              std::move(d));
    }));
    Expiry e;
    e.id = expired;
    e.response = "expired";
    const auto r = test::expire_sync(*spool, {e}, now);
    REQUIRE(r.batch);
    REQUIRE(r.items.at(0));
    CHECK(pending(*spool) == 3);

    CHECK(test::all_by_recipient(*spool, "alice@one.example") == std::vector<QueueId>{kept});
    CHECK(test::all_by_recipient(*spool, "ALICE@one.example", AddressForm::kTagged).empty());
    CHECK(test::all_by_recipient(*spool, "bob@two.example").empty());
    auto after = spool->recipient_after("alice@one.example", QueueId{0}, 10);
    REQUIRE(after.has_value());
    CHECK(*after == std::vector<QueueId>{kept});
    // A page that fills up past stale entries resumes behind them.
    auto first = spool->recipient_page("alice@one.example", AddressForm::kExact, '+', {}, 1);
    REQUIRE(first.has_value());
    CHECK(first->ids == std::vector<QueueId>{kept});
    test::check_consistent(*spool);

    // Nothing was deleted from the recipient index: the removals wrote one rcpt_gone entry each.
    spool.reset();
    const auto keys = rcpt_keys(o.path);
    CHECK(has_key(keys, "alice@one.example", removed));
    CHECK(has_key(keys, "bob@two.example", removed));
    CHECK(has_key(keys, "alice@one.example", delivered));
    CHECK(has_key(keys, "alice+news@one.example", expired));
    CHECK(keys.size() == 6);
    {
        auto raw = test::open_raw(o.path);
        auto txn = raw.env->begin_read();
        REQUIRE(txn.has_value());
        auto listed = txn->get(raw.tables.rcpt_gone, record::msg_key(removed));
        REQUIRE(listed.has_value());
        REQUIRE(listed->has_value());
        std::vector<std::string> gone;
        CHECK(record::read_key_list(**listed, gone));
        CHECK(gone == std::vector<std::string>{record::rcpt_key("alice@one.example", removed),
                                               record::rcpt_key("bob@two.example", removed)});
    }

    spool = open_spool(o);
    CHECK(pending(*spool) == 3);
    CHECK(sweep(*spool, 100) == 3);
    CHECK(pending(*spool) == 0);
    CHECK(sweep(*spool, 100) == 0);
    test::check_consistent(*spool);
    spool.reset();
    const auto swept = rcpt_keys(o.path);
    CHECK(swept == std::vector<std::string>{record::rcpt_key("alice@one.example", kept),
                                            record::rcpt_key("carol@one.example", kept)});
}

TEST_CASE("the sweep takes the oldest removals first, at most `max` messages and about "
          "kMaxSweepKeysPerOp keys a transaction") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    std::vector<QueueId> ids;
    for (int i = 0; i < 5; ++i) {
        ids.push_back(add(*spool, {"user" + std::to_string(i) + "@one.example"}));
    }
    for (const QueueId id : ids) {
        REQUIRE(spool->wait([&](Done d) { spool->remove(id, std::move(d)); }));
    }
    CHECK(pending(*spool) == 5);
    CHECK(sweep(*spool, 2) == 2);
    CHECK(pending(*spool) == 3);

    // Messages of many recipients: one transaction stops at the key cap (never below one
    // message), and the rest wait for the next.
    constexpr std::size_t kRecipients = 1000;
    constexpr std::size_t kMessages = kMaxSweepKeysPerOp / kRecipients + 3;
    std::vector<std::string> many;
    for (std::size_t i = 0; i < kRecipients; ++i) {
        std::string address(1, 'r'); // not "r" + ...: g++ 12's -Wrestrict (GCC bug 105329)
        address += std::to_string(i);
        address += "@two.example";
        many.push_back(std::move(address));
    }
    for (std::size_t i = 0; i < kMessages; ++i) {
        const QueueId id = add(*spool, many);
        REQUIRE(spool->wait([&](Done d) { spool->remove(id, std::move(d)); }));
    }
    CHECK(pending(*spool) == 3 + kMessages);
    const std::size_t first = sweep(*spool, 1000);
    // The 3 one-key messages, then as many of 1000 keys as fit under the cap.
    CHECK(first == 3 + (kMaxSweepKeysPerOp - 3) / kRecipients);
    CHECK(pending(*spool) == 3 + kMessages - first);
    CHECK(sweep(*spool, 1000) == 3 + kMessages - first);
    CHECK(pending(*spool) == 0);
    test::check_consistent(*spool);
    CHECK(test::all_by_recipient(*spool, "r7@two.example").empty());
}

TEST_CASE("check counts entries waiting for the sweep as expected, by digest and by lookup; "
          "repair deletes them") {
    TempDir dir;
    FakeClock clock;
    const SpoolOptions o = options_for(dir, clock);
    auto spool = open_spool(o);
    std::vector<QueueId> ids;
    for (int i = 0; i < 6; ++i) {
        ids.push_back(add(*spool, {"a" + std::to_string(i % 2) + "@one.example", "b@two.example"}));
    }
    for (std::size_t i = 0; i < ids.size(); i += 2) {
        REQUIRE(spool->wait([&](Done d) { spool->remove(ids[i], std::move(d)); }));
    }
    REQUIRE(pending(*spool) == 3);
    auto report = spool->check(true, false);
    REQUIRE(report.has_value());
    CHECK(report->problems.empty());
    CHECK(report->counters_compared);
    CHECK(report->removed_pending == 3);
    // The recipient index still holds the removed messages' 6 entries besides the live ones'.
    CHECK(report->index_entries == 3 * (1 + 2 + 2) + 6);
    spool.reset();

    {
        // The lookup pass (the spool changes between the check's steps): a waiting entry has no
        // record, but rcpt_gone lists it, so it is no problem; one that rcpt_gone does not list is.
        auto raw = test::open_raw(o.path);
        const Indexes indexes(raw.tables);
        const Bodies bodies(raw.tables, 4080);
        const Store store(raw.tables, indexes, bodies);
        const Checker checker(store, indexes, bodies);
        // Ids only, from another spool an hour later: at the same time its random instance byte
        // could give one of the removed ids, whose insert sweeps that id's pending entry.
        FakeClock later(clock.now_ms() + 3'600'000);
        SpoolOptions other = options_for(dir, later);
        other.path = dir.sub("ids");
        auto ids_source = open_spool(other);
        bool changed = false;
        const auto change = [&] {
            if (changed) {
                return;
            }
            changed = true;
            test::write_txn(*raw.env, [&](lmdb::WriteTxn& txn) {
                REQUIRE(store.insert(txn, message_to(*ids_source, {"new@one.example"})));
            });
        };
        CheckReport busy;
        REQUIRE(checker.check(*raw.env, false, busy, 2, change));
        CHECK(changed);
        CHECK_FALSE(busy.counters_compared);
        CHECK(busy.problems.empty());
        CHECK(busy.removed_pending == 3);

        test::write_txn(*raw.env, [&](lmdb::WriteTxn& txn) {
            REQUIRE(txn.put(raw.tables.rcpt, record::rcpt_key("x@one.example", QueueId{42}), {}));
        });
        CheckReport stray;
        REQUIRE(checker.check(*raw.env, false, stray));
        REQUIRE(stray.problems.size() == 1);
        CHECK(stray.problems[0].find("has no record") != std::string::npos);
    }

    spool = open_spool(o);
    auto repaired = spool->check(false, true);
    REQUIRE(repaired.has_value());
    CHECK(repaired->repaired);
    CHECK(pending(*spool) == 0);
    auto clean = spool->check(true, false);
    REQUIRE(clean.has_value());
    CHECK(clean->problems.empty());
    CHECK(clean->removed_pending == 0);
    CHECK(clean->index_entries == 3 * (1 + 2 + 2) + 3); // and the new message's 3
    spool.reset();
    for (std::size_t i = 0; i < ids.size(); i += 2) {
        CHECK_FALSE(has_key(rcpt_keys(o.path), "b@two.example", ids[i]));
    }
}

TEST_CASE("an id used again (a clock stepped back) sweeps its old entries first: its new ones "
          "stay") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    NewMessage first = message_to(*spool, {"alice@one.example", "bob@two.example"});
    const QueueId id = first.envelope.id;
    NewMessage again = first; // the same id and one of the same addresses
    again.envelope.recipients.pop_back();
    again.envelope.recipients.push_back(Recipient{"carol@one.example", "", 0});
    REQUIRE(enqueue_sync(*spool, std::move(first)));
    REQUIRE(spool->wait([&](Done d) { spool->remove(id, std::move(d)); }));
    CHECK(pending(*spool) == 1);
    REQUIRE(enqueue_sync(*spool, std::move(again)));
    CHECK(pending(*spool) == 0);
    CHECK(test::all_by_recipient(*spool, "alice@one.example") == std::vector<QueueId>{id});
    CHECK(test::all_by_recipient(*spool, "carol@one.example") == std::vector<QueueId>{id});
    CHECK(test::all_by_recipient(*spool, "bob@two.example").empty());
    CHECK(sweep(*spool, 10) == 0);
    CHECK(test::all_by_recipient(*spool, "alice@one.example") == std::vector<QueueId>{id});
    test::check_consistent(*spool);
}

} // namespace spoold::spool
