#include <doctest/doctest.h>

#include "common/clock.hpp"
#include "common/metrics.hpp"
#include "daemon/dsn_hook.hpp"
#include "tests/support/temp_spool.hpp"

using namespace spoold;

namespace {

spool::RecipientUpdate update(std::uint32_t index, spool::RcptState state, std::string response) {
    spool::RecipientUpdate u;
    u.index = index;
    u.state = state;
    u.response = std::move(response);
    return u;
}

spool::RecipientUpdate failed(std::uint32_t index, std::string response) {
    return update(index, spool::RcptState::kFailed, std::move(response));
}

} // namespace

TEST_CASE("DSNs for recipients the mailstore does not know are counted") {
    FakeClock clock;
    test::TempSpool spool(clock);
    auto config = std::make_shared<const std::shared_ptr<const policy::Config>>(
        std::make_shared<const policy::Config>());
    const auto build = daemon::make_dsn_builder(spool.get(), config, clock);
    metrics::Counter& unknown =
        metrics::global().counter(std::string(daemon::kUnknownRecipientMetric), "");
    const std::uint64_t before = unknown.value();

    spool::Envelope env;
    env.id = spool->new_id();
    env.mail_from = "forged@remote.example";
    env.recipients.resize(2);
    env.recipients[0].address = "nobody@example.com";
    env.recipients[1].address = "full@example.com";

    REQUIRE(build(env, {failed(1, "552 5.2.2 mailbox full")}, {}));
    CHECK(unknown.value() == before); // a real user's trouble is no backscatter
    REQUIRE(build(env, {failed(0, "550 5.1.1 no such user"), failed(1, "552 5.2.2 full")}, {}));
    CHECK(unknown.value() == before + 1); // one DSN, counted once
    env.recipients[0].notify = spool::kNotifyNever;
    CHECK_FALSE(build(env, {failed(0, "550 5.1.1 no such user")}, {})); // no DSN, nothing counted
    CHECK(unknown.value() == before + 1);
}

TEST_CASE("a delivery with NOTIFY=SUCCESS is reported delivered into the mailbox, relayed past a "
          "next hop without DSN, and not at all without SUCCESS") {
    FakeClock clock;
    test::TempSpool spool(clock);
    auto cfg = std::make_shared<policy::Config>();
    cfg->hostname = "mx1.example.com";
    auto config = std::make_shared<const std::shared_ptr<const policy::Config>>(cfg);
    const auto build = daemon::make_dsn_builder(spool.get(), config, clock);

    spool::Envelope env;
    env.id = spool->new_id();
    env.mail_from = "sender@remote.example";
    env.envid = "ENV-7";
    env.recipients.resize(3);
    env.recipients[0].address = "alice@example.com";
    env.recipients[0].notify = spool::kNotifySuccess | spool::kNotifyFailure;
    env.recipients[1].address = "bob@example.com";
    env.recipients[1].notify = spool::kNotifySuccess;
    env.recipients[2].address = "carol@example.com"; // no NOTIFY: failures only

    const auto delivered = [](std::uint32_t i) {
        return update(i, spool::RcptState::kDelivered, "250 2.0.0 delivered");
    };
    const auto dsn =
        build(env, {delivered(0), delivered(2)}, {drain::Handoff::kFinal, drain::Handoff::kFinal});
    REQUIRE(dsn);
    CHECK(dsn->envelope.mail_from.empty());
    REQUIRE(dsn->envelope.recipients.size() == 1);
    CHECK(dsn->envelope.recipients[0].address == "sender@remote.example");
    CHECK((dsn->envelope.flags & spool::kFlagDsn) != 0);
    const std::string& body = dsn->body;
    CHECK(body.find("Subject: Successful Mail Delivery Report\r\n") != std::string::npos);
    CHECK(body.find("Final-Recipient: rfc822; alice@example.com\r\nAction: delivered\r\n"
                    "Status: 2.0.0\r\n") != std::string::npos);
    CHECK(body.find("Original-Envelope-Id: ENV-7\r\n") != std::string::npos);
    CHECK(body.find("carol@example.com") == std::string::npos);

    const auto relayed = build(env, {delivered(1)}, {drain::Handoff::kRelayed});
    REQUIRE(relayed);
    CHECK(relayed->body.find("Final-Recipient: rfc822; bob@example.com\r\nAction: relayed\r\n") !=
          std::string::npos);

    CHECK_FALSE(build(env, {delivered(2)}, {drain::Handoff::kFinal}));
    env.mail_from.clear(); // the null sender never gets one
    CHECK_FALSE(build(env, {delivered(0)}, {drain::Handoff::kFinal}));
}
