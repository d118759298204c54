#include <doctest/doctest.h>

#include "common/address.hpp"
#include "tools/spoolctl/relay_client.hpp"
#include "tools/spoolctl/xfer.hpp"

using namespace spoold;
using namespace spoold::spoolctl;

TEST_CASE("xfer --to takes host:port or [v6]:port and nothing else") {
    const auto v4 = parse_relay_target("127.0.0.1:2525");
    REQUIRE(v4);
    CHECK(v4->host == "127.0.0.1");
    CHECK(v4->port == 2525);
    const auto v6 = parse_relay_target("[::1]:25");
    REQUIRE(v6);
    CHECK(v6->host == "::1");
    CHECK(v6->port == 25);
    CHECK(parse_relay_target("mx2.example.com:25")->host == "mx2.example.com");
    for (const char* bad :
         {"", "127.0.0.1", ":25", "127.0.0.1:", "127.0.0.1:0", "h:65536", "h:2x"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_relay_target(bad));
    }
}

TEST_CASE("a moved message carries its pending recipients, DSN parameters and the claim") {
    spool::Envelope env;
    env.mail_from = "a@example.org";
    env.arrival_ms = 1'700'000'000'000;
    env.expires_ms = 1'700'086'400'000;
    env.flags = spool::kFlag8BitMime;
    env.ret = "HDRS";
    env.envid = "id+1";
    spool::Recipient done;
    done.address = "done@example.com";
    done.state = spool::RcptState::kDelivered;
    spool::Recipient queued;
    queued.address = "q@example.com";
    queued.notify = address::kNotifySuccess | address::kNotifyFailure;
    queued.orcpt = "rfc822;Q@example.com";
    spool::Recipient deferred;
    deferred.address = "d@example.com";
    deferred.state = spool::RcptState::kDeferred;
    spool::Recipient failed;
    failed.address = "f@example.com";
    failed.state = spool::RcptState::kFailed;
    env.recipients = {done, queued, deferred, failed};

    const RelayMessage m = relay_message(env, "bulk");
    CHECK(m.mail_from == "a@example.org");
    CHECK(m.mail_params ==
          " BODY=8BITMIME RET=HDRS ENVID=id+2B1 XSPOOLD-XFER=bulk,1700000000000,1700086400000");
    REQUIRE(m.recipients.size() == 2);
    CHECK(m.recipients[0].address == "q@example.com");
    CHECK(m.recipients[0].params == " NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Q@example.com");
    CHECK(m.recipients[1].address == "d@example.com");
    CHECK(m.recipients[1].params.empty());

    env.recipients = {done, failed};
    CHECK(relay_message(env, "bulk").recipients.empty());
}
