#include <doctest/doctest.h>

#include "drain/outcome.hpp"

using namespace spoold;
using namespace spoold::drain;
using namespace std::chrono_literals;

namespace {

policy::DrainConfig drain_config() {
    policy::DrainConfig dc;
    dc.retry_min = 60s;
    dc.retry_max = 1h;
    return dc;
}

Reply reply(int code, const char* enhanced) { return make_reply(code, enhanced, "x"); }

} // namespace

TEST_CASE("per-recipient 4xx alongside the store's trouble keeps the recipient queued") {
    const policy::DrainConfig dc = drain_config();
    spool::Envelope env;
    env.recipients.resize(3);
    env.recipients[1].attempts = 2;
    DeliveryResult r;
    r.mailstore_trouble = true;
    r.connection_lost = true; // the session broke off after the final replies began
    r.per_recipient = {reply(250, "2.0.0"), reply(451, "4.3.0"), reply(550, "5.1.1")};
    const auto u = map_result(env, {0, 1, 2}, r, dc, 1000);
    REQUIRE(u.size() == 3);
    CHECK(u[0].state == spool::RcptState::kDelivered);
    CHECK(u[1].state == spool::RcptState::kQueued);
    CHECK_FALSE(u[1].count_attempt);
    CHECK(u[2].state == spool::RcptState::kFailed);

    DeliveryResult plain;
    plain.per_recipient = {reply(452, "4.2.2")};
    const auto d = map_result(env, {1}, plain, dc, 1000);
    CHECK(d[0].state == spool::RcptState::kDeferred);
    CHECK(d[0].count_attempt);
    CHECK(d[0].next_attempt_ms == 1000 + 240'000); // 2 earlier attempts: 1 min doubled twice

    DeliveryResult session;
    session.session_reply = reply(554, "5.7.1");
    const auto f = map_result(env, {0, 2}, session, dc, 1000);
    CHECK(f[0].state == spool::RcptState::kFailed);
    CHECK(f[1].state == spool::RcptState::kFailed);

    DeliveryResult short_reply; // a connector bug: fewer replies than recipients
    short_reply.per_recipient = {reply(250, "2.0.0")};
    const auto s = map_result(env, {0, 2}, short_reply, dc, 1000);
    CHECK(s[1].state == spool::RcptState::kDeferred);
}

TEST_CASE("a mailbox's own trouble defers it without counting an attempt") {
    const policy::DrainConfig dc = drain_config();
    spool::Envelope env;
    env.recipients.resize(3);
    env.recipients[1].attempts = 2;
    DeliveryResult r; // a dead shard behind the store, at RCPT
    r.per_recipient = {reply(250, "2.0.0"), reply(451, "4.3.0"), reply(452, "4.2.2")};
    const auto u = map_result(env, {0, 1, 2}, r, dc, 1000);
    REQUIRE(u.size() == 3);
    CHECK(u[0].state == spool::RcptState::kDelivered);
    CHECK(u[1].state == spool::RcptState::kDeferred);
    CHECK_FALSE(u[1].count_attempt);
    CHECK(u[1].next_attempt_ms == 1000 + 60'000); // retry_min until the drain parks it
    CHECK(u[1].response.starts_with("451 4.3.0"));
    CHECK(u[2].state == spool::RcptState::kDeferred); // over quota: its own, counted
    CHECK(u[2].count_attempt);
}

TEST_CASE("retry delays double per attempt between retry_min and retry_max") {
    policy::DrainConfig dc;
    dc.retry_min = 60s;
    dc.retry_max = 1h;
    CHECK(retry_delay(dc, 0) == 60s);
    CHECK(retry_delay(dc, 1) == 120s);
    CHECK(retry_delay(dc, 5) == 1920s);
    CHECK(retry_delay(dc, 6) == 1h);
    CHECK(retry_delay(dc, 1000) == 1h);
}
