#include <doctest/doctest.h>

#include "drain/mail_log.hpp"

using namespace spoold;
using namespace spoold::drain;

namespace {

spool::Envelope envelope() {
    spool::Envelope env;
    env.id = *QueueId::parse("0G5ABCDEFGHJK");
    env.arrival_ms = 1'000'000;
    for (const char* a : {"a@example.com", "b@example.com", "c@example.net"}) {
        spool::Recipient r;
        r.address = a;
        env.recipients.push_back(r);
    }
    return env;
}

spool::RecipientUpdate update(std::uint32_t index, spool::RcptState state, const char* response) {
    spool::RecipientUpdate u;
    u.index = index;
    u.state = state;
    u.response = response;
    return u;
}

const std::vector<MailLogRoute> kRoutes = {
    {"lmtp", "dovecot"}, {"lmtp", "dovecot"}, {"virtual", "default"}};

} // namespace

TEST_CASE("each outcome is one Postfix delivery line with the reply's enhanced code and delay") {
    const auto lines =
        outcome_lines(envelope(),
                      {update(0, spool::RcptState::kDelivered, "250 2.1.5 <a@example.com> Saved"),
                       update(1, spool::RcptState::kDeferred, "452 4.2.2 Mailbox full (quota)"),
                       update(2, spool::RcptState::kFailed, "550 unknown user")},
                      kRoutes, 1'002'500);
    REQUIRE(lines.size() == 3); // one still deferred: not removed
    CHECK(lines[0].service == "lmtp");
    CHECK(lines[0].text == "0G5ABCDEFGHJK: to=<a@example.com>, relay=dovecot, delay=2.50, "
                           "dsn=2.1.5, status=sent (250 2.1.5 <a@example.com> Saved)");
    CHECK(lines[1].text == "0G5ABCDEFGHJK: to=<b@example.com>, relay=dovecot, delay=2.50, "
                           "dsn=4.2.2, status=deferred (452 4.2.2 Mailbox full [quota])");
    CHECK(lines[2].service == "virtual");
    CHECK(lines[2].text == "0G5ABCDEFGHJK: to=<c@example.net>, relay=default, delay=2.50, "
                           "dsn=5.0.0, status=bounced (550 unknown user)");
}

TEST_CASE("a message whose recipients are all final is removed; a store in trouble logs nothing") {
    spool::Envelope env = envelope();
    env.recipients[0].state = spool::RcptState::kDelivered;
    const auto done = outcome_lines(env,
                                    {update(1, spool::RcptState::kDelivered, "250 ok"),
                                     update(2, spool::RcptState::kExpired, "expired")},
                                    kRoutes, 1'000'000);
    REQUIRE(done.size() == 3);
    CHECK(done[1].text.ends_with("dsn=4.4.7, status=expired (expired)"));
    CHECK(done[2].service == "qmgr");
    CHECK(done[2].text == "0G5ABCDEFGHJK: removed");

    const auto trouble =
        outcome_lines(envelope(), {update(0, spool::RcptState::kQueued, "421 4.3.2 shutting down")},
                      kRoutes, 1'000'000);
    CHECK(trouble.empty());
}
