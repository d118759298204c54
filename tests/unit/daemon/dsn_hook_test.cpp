#include <doctest/doctest.h>

#include "common/clock.hpp"
#include "common/metrics.hpp"
#include "daemon/dsn_hook.hpp"
#include "tests/support/temp_spool.hpp"

using namespace spoold;

namespace {

spool::RecipientUpdate failed(std::uint32_t index, std::string response) {
    spool::RecipientUpdate u;
    u.index = index;
    u.state = spool::RcptState::kFailed;
    u.response = std::move(response);
    return u;
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

    REQUIRE(build(env, {failed(1, "552 5.2.2 mailbox full")}));
    CHECK(unknown.value() == before); // a real user's trouble is no backscatter
    REQUIRE(build(env, {failed(0, "550 5.1.1 no such user"), failed(1, "552 5.2.2 full")}));
    CHECK(unknown.value() == before + 1); // one DSN, counted once
    env.recipients[0].notify = spool::kNotifyNever;
    CHECK_FALSE(build(env, {failed(0, "550 5.1.1 no such user")})); // no DSN, nothing counted
    CHECK(unknown.value() == before + 1);
}
