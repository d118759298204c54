#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "spool/lmdb/lmdb.hpp"
#include "spool/writer.hpp"
#include "spool_test_support.hpp"

namespace spoold::spool {
using test::check_consistent;
using test::make_message;
using test::open_spool;
using test::options_for;
using test::TempDir;

namespace {

constexpr auto kDeadline = std::chrono::seconds(10);

// "k<i>", appended rather than `"k" + std::to_string(i)`: g++ 12 at -O3 takes that operator+ for
// an overlapping memcpy (-Wrestrict, GCC bug 105329) when its inlining budget falls that way.
std::string key_of(int i) {
    std::string key = "k";
    key += std::to_string(i);
    return key;
}

// A bare environment with one table, for ops that write plain keys.
struct Bench {
    TempDir dir;
    std::unique_ptr<lmdb::Env> env;
    lmdb::Dbi table;

    Bench() {
        lmdb::EnvOptions eo;
        eo.path = dir.sub("env");
        eo.map_size = 16ULL << 20U;
        auto e = lmdb::Env::open(eo);
        REQUIRE(e.has_value());
        env = std::move(*e);
        auto t = env->table("t", true);
        REQUIRE(t.has_value());
        table = *t;
    }

    // The committed value of `key`, as a new reader sees it. Called on the writer thread
    // too, so it fails by returning nothing rather than by a doctest assertion.
    std::optional<std::string> committed(const std::string& key) const {
        auto txn = env->begin_read();
        if (!txn) {
            return std::nullopt;
        }
        auto v = txn->get(table, key);
        if (!v || !*v) {
            return std::nullopt;
        }
        return std::string(**v);
    }

    Op put(std::string key, Done done = {}) const {
        const lmdb::Dbi t = table;
        return Op{[t, key](lmdb::WriteTxn& txn) -> Status {
                      SPOOLD_CHECK(txn.put(t, key, "v"));
                      return {};
                  },
                  std::move(done)};
    }
};

Result<std::uint64_t> nothing_used(const lmdb::Txn&) { return 0; }

// The page count of a map that is already full.
UsedPages all_used(const lmdb::Env& env) {
    return [&env](const lmdb::Txn&) -> Result<std::uint64_t> {
        auto info = env.info();
        REQUIRE(info.has_value());
        return info->map_size / info->page_size;
    };
}

} // namespace

TEST_CASE("an op that fails after writing leaves no trace and the rest of its batch commits once") {
    Bench b;
    std::vector<Op> batch;
    // Read-modify-write: applied twice (the batch is re-run), committed once.
    batch.push_back(Op{[&b](lmdb::WriteTxn& txn) -> Status {
        SPOOLD_TRY(cur, txn.get(b.table, "counter"));
        const std::string next = cur ? std::string(*cur) + "+" : "+";
        SPOOLD_CHECK(txn.put(b.table, "counter", next));
        return {};
    }});
    batch.push_back(Op{[&b](lmdb::WriteTxn& txn) -> Status {
        SPOOLD_CHECK(txn.put(b.table, "dirty", "v"));
        return fail(ErrorKind::kIo, "failed after its first write");
    }});
    batch.push_back(b.put("after"));
    batch.push_back(Op{[](lmdb::WriteTxn&) -> Status {
        return fail(ErrorKind::kNotFound, "refused before any write");
    }});
    batch.push_back(b.put("last"));

    const std::vector<Status> results = run_batch(*b.env, batch, nothing_used);
    REQUIRE(results.size() == 5);
    CHECK(results[0].has_value());
    REQUIRE_FALSE(results[1].has_value());
    CHECK(results[1].error().kind == ErrorKind::kIo);
    CHECK(results[2].has_value());
    REQUIRE_FALSE(results[3].has_value());
    CHECK(results[3].error().kind == ErrorKind::kNotFound);
    CHECK(results[4].has_value());
    CHECK(b.committed("counter") == std::optional<std::string>{"+"});
    CHECK_FALSE(b.committed("dirty").has_value());
    CHECK(b.committed("after").has_value());
    CHECK(b.committed("last").has_value());
}

TEST_CASE("on a full map new mail is refused while the other ops of the batch commit") {
    Bench b;
    std::vector<Op> batch;
    batch.push_back(b.put("outcome"));
    Op mail = b.put("mail");
    mail.grows = true;
    batch.push_back(std::move(mail));
    batch.push_back(b.put("delete"));

    const std::vector<Status> results = run_batch(*b.env, batch, all_used(*b.env));
    REQUIRE(results.size() == 3);
    CHECK(results[0].has_value());
    REQUIRE_FALSE(results[1].has_value());
    CHECK(results[1].error().kind == ErrorKind::kSpoolFull);
    CHECK(results[2].has_value());
    CHECK(b.committed("outcome").has_value());
    CHECK_FALSE(b.committed("mail").has_value());
    CHECK(b.committed("delete").has_value());
}

TEST_CASE("Done runs only after the commit, and ops queued together share one commit") {
    Bench b;
    Writer writer(*b.env, Writer::Options{4096, nothing_used, std::nullopt});
    writer.start();

    // The first op holds the writer inside its transaction while the rest queue up behind it.
    std::promise<void> holding;
    std::promise<void> release;
    auto released = release.get_future().share();
    std::atomic<bool> first_seen_committed{false};
    Op first = b.put("first", [&](const Status& st) {
        first_seen_committed = st.has_value() && b.committed("first").has_value();
    });
    auto put_first = first.apply;
    first.apply = [&holding, put_first, released](lmdb::WriteTxn& txn) -> Status {
        holding.set_value();
        if (released.wait_for(kDeadline) != std::future_status::ready) {
            return fail(ErrorKind::kTimeout, "the test never released the writer");
        }
        return put_first(txn);
    };
    writer.submit(std::move(first));
    REQUIRE(holding.get_future().wait_for(kDeadline) == std::future_status::ready);

    constexpr int kOps = 50;
    std::atomic<int> done{0};
    std::atomic<int> saw_whole_batch{0};
    for (int i = 0; i < kOps; ++i) {
        writer.submit(b.put(key_of(i), [&](const Status& st) {
            // Every op of the batch is committed before the first Done runs.
            bool all = st.has_value();
            for (int j = 0; j < kOps && all; ++j) {
                all = b.committed(key_of(j)).has_value();
            }
            saw_whole_batch += all ? 1 : 0;
            ++done;
        }));
    }
    release.set_value();
    REQUIRE(test::eventually([&] { return done.load() == kOps; }));
    CHECK(first_seen_committed.load());
    CHECK(saw_whole_batch.load() == kOps);
}

TEST_CASE("a stopping writer applies what is queued and refuses what comes after") {
    Bench b;
    Writer writer(*b.env, Writer::Options{8, nothing_used, std::nullopt});
    writer.start();
    constexpr int kOps = 100;
    std::atomic<int> ok{0};
    for (int i = 0; i < kOps; ++i) {
        writer.submit(b.put(key_of(i), [&](const Status& st) { ok += st.has_value() ? 1 : 0; }));
    }
    writer.stop();
    CHECK(ok.load() == kOps);
    CHECK(b.committed(key_of(kOps - 1)).has_value());

    std::optional<Status> late;
    writer.submit(b.put("late", [&](Status st) { late = std::move(st); }));
    REQUIRE(late.has_value());
    REQUIRE_FALSE(late->has_value());
    CHECK(late->error().kind == ErrorKind::kShutdown);
    CHECK_FALSE(b.committed("late").has_value());
}

TEST_CASE("one failing op in a batch does not fail the others") {
    TempDir dir;
    FakeClock clock;
    auto spool = open_spool(options_for(dir, clock));
    std::atomic<int> ok{0};
    std::atomic<int> not_found{0};
    std::atomic<int> done{0};
    constexpr int kOps = 200;
    for (int i = 0; i < kOps; ++i) {
        auto count = [&](Status st) {
            if (st) {
                ++ok;
            } else if (st.error().kind == ErrorKind::kNotFound) {
                ++not_found;
            }
            ++done;
        };
        if (i % 10 == 0) {
            spool->remove(QueueId{12345}, count);
        } else {
            spool->enqueue(make_message(*spool, 1, 1, "x"), count);
        }
    }
    REQUIRE(test::eventually([&] { return done.load() == kOps; }));
    CHECK(ok.load() == kOps - kOps / 10);
    CHECK(not_found.load() == kOps / 10);
    check_consistent(*spool);
}

TEST_CASE("an op marked first goes ahead of the queued ones, into the next batch") {
    Bench b;
    Writer writer(*b.env, Writer::Options{4, nothing_used, std::nullopt});
    writer.start();
    std::mutex order_mutex;
    std::vector<std::string> order; // ops in the order the writer applied them
    const auto recorded = [&](std::string key, bool first) {
        Op op = b.put(key);
        auto put = op.apply;
        op.apply = [&order, &order_mutex, put, key](lmdb::WriteTxn& txn) -> Status {
            const std::lock_guard lock(order_mutex);
            if (std::find(order.begin(), order.end(), key) == order.end()) {
                order.push_back(key);
            }
            return put(txn);
        };
        op.first = first;
        return op;
    };
    std::promise<void> holding;
    std::promise<void> release;
    auto released = release.get_future().share();
    Op hold = recorded("hold", false);
    auto put_hold = hold.apply;
    hold.apply = [&holding, put_hold, released](lmdb::WriteTxn& txn) -> Status {
        holding.set_value();
        if (released.wait_for(kDeadline) != std::future_status::ready) {
            return fail(ErrorKind::kTimeout, "the test never released the writer");
        }
        return put_hold(txn);
    };
    writer.submit(std::move(hold));
    REQUIRE(holding.get_future().wait_for(kDeadline) == std::future_status::ready);
    for (int i = 0; i < 10; ++i) {
        writer.submit(recorded(key_of(i), false));
    }
    std::promise<void> urgent_done;
    Op urgent = recorded("urgent", true);
    urgent.done = [&urgent_done](const Status&) { urgent_done.set_value(); };
    writer.submit(std::move(urgent));
    release.set_value();
    REQUIRE(urgent_done.get_future().wait_for(kDeadline) == std::future_status::ready);
    writer.stop();
    REQUIRE(order.size() == 12);
    CHECK(order[0] == "hold");
    CHECK(order[1] == "urgent");
    CHECK(order[2] == "k0");
    CHECK(order[11] == "k9");
}

} // namespace spoold::spool
