// The drain over a real spool in a temp dir with scripted fake mailstores, on an io_context
// the test runs: what every drain test case shares. Waits by the drain's loop turns and the
// fake clock, never by real-time windows.
#pragma once

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <optional>
#include <utility>

#include "drain/drain.hpp"
#include "fake_mailstore.hpp"
#include "tests/support/temp_spool.hpp"

namespace spoold::drain::test {

using namespace std::chrono_literals;
using spoold::test::TempSpool;
using spoold::test::TestMessage;

inline policy::Config test_config() {
    policy::Config c;
    c.mailstores.resize(1);
    c.mailstores[0].name = "lmtp"; // as the harness's FakeMailstore
    c.drain.max_concurrency = 8;
    c.drain.initial_concurrency = 2;
    c.drain.breaker_failures = 3;
    c.drain.breaker_min_backoff = 1s;
    c.drain.breaker_max_backoff = 8s;
    c.drain.retry_min = 60s;
    c.drain.retry_max = 1h;
    return c;
}

struct DsnCall {
    QueueId id;
    std::vector<std::uint32_t> indexes;
    std::vector<Handoff> handoffs;
};

// One drain over a real spool in a temp dir and fake mailstores, on an io_context run by
// the test. The DSN builder spools DSNs as daemon/dsn_hook does (own id, flagged).
struct Harness {
    // One mailstore "lmtp"; with `second`, also "other", which takes example.net. With
    // `through_faulty` the drain reaches the spool through `faulty`.
    explicit Harness(policy::Config c = test_config(), bool second = false,
                     bool through_faulty = false)
        : config(std::move(c)) {
        auto m = std::make_unique<FakeMailstore>("lmtp");
        store = m.get();
        std::vector<std::unique_ptr<Mailstore>> stores;
        stores.push_back(std::move(m));
        if (second) {
            config.mailstores.resize(1);
            config.mailstores[0].name = "lmtp";
            policy::MailstoreConfig o;
            o.name = "other";
            o.domains = {"example.net"};
            config.mailstores.push_back(o);
            auto m2 = std::make_unique<FakeMailstore>("other");
            other = m2.get();
            stores.push_back(std::move(m2));
        }
        drain = std::make_unique<Drain>(
            ioc.get_executor(), through_faulty ? static_cast<spool::Spool&>(faulty) : spool.get(),
            config, std::move(stores), clock,
            [this](const spool::Envelope& env, const std::vector<spool::RecipientUpdate>& updates,
                   const std::vector<Handoff>& handoffs) {
                DsnCall call{env.id, {}, handoffs};
                for (const auto& u : updates) {
                    call.indexes.push_back(u.index);
                }
                dsn_calls.push_back(call);
                spool::NewMessage dsn;
                dsn.envelope.id =
                    next_dsn_id ? *std::exchange(next_dsn_id, std::nullopt) : spool->new_id();
                dsn.envelope.arrival_ms = clock.now_ms();
                dsn.envelope.klass = 0;
                dsn.envelope.flags = spool::kFlagDsn;
                dsn.envelope.recipients.push_back(spool::Recipient{env.mail_from, "", 0});
                dsn.body = "DSN for " + env.id.text() + "\r\n";
                dsn_ids.push_back(dsn.envelope.id);
                return std::optional<spool::NewMessage>(std::move(dsn));
            });
    }
    ~Harness() {
        // A test's script may capture locals declared after the harness, gone by now;
        // deliveries still in flight while the drain stops take the plain path instead.
        for (FakeMailstore* m : {store, other, relay}) {
            if (m != nullptr) {
                m->script = nullptr;
            }
        }
        faulty.release_outcomes(); // a failed check may have left some held
        bool stopped = false;
        drain->stop([&] { stopped = true; }, 1s);
        run_until([&] { return stopped; });
    }
    Harness(const Harness&) = delete;
    Harness& operator=(const Harness&) = delete;

    // Runs the io_context until `done` holds or ten real seconds pass (no sleeps).
    template <typename Pred> bool run_until(Pred done, std::chrono::milliseconds limit = 10s) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline) {
                return false;
            }
            ioc.run_for(5ms);
            if (ioc.stopped()) {
                ioc.restart();
            }
        }
        return true;
    }
    // Runs until the drain's loop has turned `turns` more times: every turn it looked at
    // the spool, its stores and the clock, so what has not happened by then will not
    // happen without a new event (the clock moving, mail arriving, a store coming back).
    void run_turns(std::uint64_t turns) {
        const std::uint64_t start = snap().loop_turns;
        REQUIRE(run_until([&] { return snap().loop_turns >= start + turns; }));
    }
    // Runs until `done` holds or the loop has turned `turns` more times; returns `done()`.
    template <typename Pred> bool run_until_or_turns(Pred done, std::uint64_t turns) {
        const std::uint64_t start = snap().loop_turns;
        REQUIRE(run_until([&] { return done() || snap().loop_turns >= start + turns; }));
        return done();
    }
    // Runs until `done` holds, or the loop has turned `turns` more times and the drain is
    // idle (what those turns started has finished: a delivery, its outcome's commit, a
    // probe); returns `done()`. A slow (sanitized) run waits longer, it never looks less.
    template <typename Pred> bool settle(Pred done, std::uint64_t turns) {
        const std::uint64_t start = snap().loop_turns;
        REQUIRE(run_until([&] {
            if (done()) {
                return true;
            }
            const DrainSnapshot s = snap();
            return s.loop_turns >= start + turns && s.idle;
        }));
        return done();
    }
    // Moves the clock a second at a time, as time passes in production, letting the loop
    // turn twice and settle after each step, until `done` holds; false after `steps`
    // seconds (the last step is settled too).
    template <typename Pred> bool step_until(Pred done, int steps = 30) {
        for (int i = 0; i < steps; ++i) {
            if (settle(done, 2)) {
                return true;
            }
            clock.advance_ms(1000);
        }
        return settle(done, 2);
    }
    DrainSnapshot snap() { return drain->snapshot(); }
    // Whether `mailstore` received message `id`.
    static bool received(const FakeMailstore* mailstore, QueueId id) {
        return std::any_of(mailstore->received.begin(), mailstore->received.end(),
                           [&](const auto& r) { return r.id == id; });
    }
    // The smarthost DSNs go out through (before start()).
    FakeMailstore* add_relay() {
        auto m = std::make_unique<FakeMailstore>("smarthost");
        relay = m.get();
        drain->set_dsn_relay(std::move(m));
        return relay;
    }

    FakeClock clock;
    TempSpool spool{clock};
    spoold::test::FaultySpool faulty{spool.get()};
    policy::Config config;
    boost::asio::io_context ioc;
    FakeMailstore* store = nullptr;
    FakeMailstore* other = nullptr; // the second mailstore, when asked for
    FakeMailstore* relay = nullptr;
    std::vector<DsnCall> dsn_calls;
    std::vector<QueueId> dsn_ids; // the DSNs the builder made, in order
    // The id the builder gives its next DSN (one taken earlier), instead of a new one.
    std::optional<QueueId> next_dsn_id;
    std::unique_ptr<Drain> drain;
};

inline Reply reply(int code, const char* enhanced) { return make_reply(code, enhanced, "x"); }

} // namespace spoold::drain::test
