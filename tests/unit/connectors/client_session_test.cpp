#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "drain/connectors/client_session.hpp"
#include "common/reply_parser.hpp"

using namespace spoold;
using namespace spoold::drain;
using namespace spoold::drain::connectors;

namespace {

constexpr std::uint8_t kNotifySuccessFailure = spool::kNotifySuccess | spool::kNotifyFailure;

// Drives a ClientSession as the transcript says: each server reply in, the client's
// output and next step checked.
struct Transcript {
    ClientSession session;
    Next next = Next::kClose;

    explicit Transcript(Dialect d, bool starttls = false) : session(d, "mx1.test", starttls) {
        next = session.start();
    }
    // Feeds one server reply; returns what the client wrote in response.
    std::string server(std::string_view wire) {
        auto r = parse_reply(wire);
        REQUIRE_MESSAGE(r, wire);
        next = session.on_reply(*r);
        return session.take_output();
    }
    std::string begin(const DeliveryRequest& req) {
        next = session.begin(req);
        return session.take_output();
    }
};

DeliveryRequest request(std::vector<std::string> rcpts, std::string from = "sender@example.org") {
    DeliveryRequest req;
    req.mail_from = std::move(from);
    req.recipients = std::move(rcpts);
    req.size = 1234;
    return req;
}

const char* const kDovecotLhlo =
    "250-mx1\r\n250-8BITMIME\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250 PIPELINING\r\n";

} // namespace

TEST_CASE("LHLO capabilities are parsed, including SIZE with its limit") {
    auto r = parse_reply("250-mx\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8bitmime\r\n"
                         "250-SMTPUTF8\r\n250-STARTTLS\r\n250 CHUNKING\r\n");
    REQUIRE(r);
    const Capabilities c = parse_capabilities(*r);
    CHECK(c.pipelining);
    CHECK(c.eight_bit_mime);
    CHECK(c.smtputf8);
    CHECK(c.starttls);
    CHECK(c.chunking);
    CHECK(c.size);
    CHECK(c.size_limit == 52428800);
}

TEST_CASE("a SIZE argument that is not 1*20DIGIT in range is taken as no limit") {
    const std::vector<std::pair<std::string, std::uint64_t>> cases{
        {"SIZE", 0},
        {"SIZE 0", 0},
        {"SIZE 1000", 1000},
        {"SIZE 18446744073709551615", 18446744073709551615ULL},
        {"SIZE -1", 0},                   // stoull made this ULLONG_MAX
        {"SIZE 18446744073709551616", 0}, // past 2^64 - 1
        {"SIZE 10M", 0},                  // stoull made this 10
        {"SIZE +5", 0},
        {"SIZE 5 6", 0},
    };
    for (const auto& [line, limit] : cases) {
        CAPTURE(line);
        auto r = parse_reply("250-mx\r\n250 " + line + "\r\n");
        REQUIRE(r);
        const Capabilities c = parse_capabilities(*r);
        CHECK(c.size);
        CHECK(c.size_limit == limit);
    }
}

TEST_CASE("LMTP: pipelined envelope, then one reply per accepted recipient after the dot") {
    Transcript t(Dialect::kLmtp);
    CHECK(t.next == Next::kRead);
    CHECK(t.server("220 mx1 Dovecot ready.\r\n") == "LHLO mx1.test\r\n");
    CHECK(t.server(kDovecotLhlo).empty());
    CHECK(t.next == Next::kReady);

    auto req = request({"ok@example.com", "full@example.com", "unknown@example.com"});
    req.eight_bit_mime = true;
    CHECK(t.begin(req) == "MAIL FROM:<sender@example.org> BODY=8BITMIME\r\n"
                          "RCPT TO:<ok@example.com>\r\nRCPT TO:<full@example.com>\r\n"
                          "RCPT TO:<unknown@example.com>\r\nDATA\r\n");
    CHECK(t.server("250 2.1.0 OK\r\n").empty());
    CHECK(t.server("250 2.1.5 OK\r\n").empty());
    CHECK(t.server("250 2.1.5 OK\r\n").empty());
    CHECK(t.server("550 5.1.1 <unknown@example.com> User doesn't exist\r\n").empty());
    CHECK(t.next == Next::kRead);
    t.server("354 OK\r\n");
    CHECK(t.next == Next::kSendBody);
    t.next = t.session.body_sent();
    CHECK(t.next == Next::kRead);
    t.server("250 2.0.0 <ok@example.com> Saved\r\n");
    CHECK(t.next == Next::kRead); // one more accepted recipient to answer
    t.server("452 4.2.2 <full@example.com> Quota exceeded\r\n");
    CHECK(t.next == Next::kDone);
    const DeliveryResult res = t.session.take_result();
    CHECK_FALSE(res.session_reply);
    CHECK_FALSE(res.mailstore_trouble); // over quota is the recipient's problem
    REQUIRE(res.per_recipient.size() == 3);
    CHECK(res.per_recipient[0].code == 250);
    CHECK(res.per_recipient[1].summary() == "452 4.2.2 <full@example.com> Quota exceeded");
    CHECK(res.per_recipient[2].code == 550);
    CHECK(t.session.usable());
    CHECK(t.session.stage() == Stage::kReady);
}

TEST_CASE("a reused connection pipelines RSET with the next envelope when the server allows") {
    Transcript t(Dialect::kLmtp);
    t.server("220 ready\r\n");
    t.server(kDovecotLhlo);
    t.begin(request({"a@x.test"}));
    t.server("250 2.1.0 OK\r\n");
    t.server("250 2.1.5 OK\r\n");
    t.server("354 OK\r\n");
    t.session.body_sent();
    t.server("250 2.0.0 Saved\r\n");
    REQUIRE(t.next == Next::kDone);
    (void)t.session.take_result();

    CHECK(t.begin(request({"b@x.test"})) ==
          "RSET\r\nMAIL FROM:<sender@example.org>\r\nRCPT TO:<b@x.test>\r\nDATA\r\n");
    CHECK(t.session.stage() == Stage::kRset);
    CHECK(t.server("250 2.0.0 OK\r\n").empty()); // RSET's: the envelope's replies follow
    CHECK(t.session.stage() == Stage::kEnvelope);
    CHECK(t.server("250 2.1.0 OK\r\n").empty());
    CHECK(t.server("250 2.1.5 OK\r\n").empty());
    t.server("354 OK\r\n");
    CHECK(t.next == Next::kSendBody);
    t.next = t.session.body_sent();
    t.server("250 2.0.0 <b@x.test> Saved\r\n");
    REQUIRE(t.next == Next::kDone);
    CHECK(t.session.take_result().per_recipient[0].code == 250);
}

TEST_CASE("a refused pipelined RSET fails the message and the connection") {
    Transcript t(Dialect::kLmtp);
    t.server("220 ready\r\n");
    t.server(kDovecotLhlo);
    t.begin(request({"a@x.test"}));
    t.server("250 2.1.0 OK\r\n");
    t.server("250 2.1.5 OK\r\n");
    t.server("354 OK\r\n");
    t.session.body_sent();
    t.server("250 2.0.0 Saved\r\n");
    (void)t.session.take_result();

    (void)t.begin(request({"b@x.test"}));
    t.server("451 4.3.0 internal error\r\n");
    CHECK(t.next == Next::kDone);
    CHECK_FALSE(t.session.usable()); // the envelope's replies are never read
    const DeliveryResult res = t.session.take_result();
    CHECK(res.mailstore_trouble);
    CHECK(res.per_recipient[0].summary() == "451 4.3.0 internal error");
}

TEST_CASE("a reused connection sends RSET alone before the next envelope without PIPELINING") {
    Transcript t(Dialect::kLmtp);
    t.server("220 ready\r\n");
    t.server("250-mx1\r\n250 8BITMIME\r\n");
    t.begin(request({"a@x.test"}));
    t.server("250 2.1.0 OK\r\n");
    t.server("250 2.1.5 OK\r\n");
    t.server("354 OK\r\n");
    t.session.body_sent();
    t.server("250 2.0.0 Saved\r\n");
    REQUIRE(t.next == Next::kDone);
    (void)t.session.take_result();

    CHECK(t.begin(request({"b@x.test"})) == "RSET\r\n");
    CHECK(t.session.stage() == Stage::kRset);
    CHECK(t.server("250 2.0.0 OK\r\n") == "MAIL FROM:<sender@example.org>\r\n");
}

TEST_CASE(
    "without PIPELINING commands go one at a time and DATA is skipped when no recipient is left") {
    Transcript t(Dialect::kSmtp);
    t.server("220 relay ESMTP\r\n");
    CHECK(t.server("250-relay\r\n250 SIZE 1000000\r\n").empty());
    CHECK(t.begin(request({"x@y.test", "z@y.test"})) ==
          "MAIL FROM:<sender@example.org> SIZE=1234\r\n");
    CHECK(t.server("250 2.1.0 ok\r\n") == "RCPT TO:<x@y.test>\r\n");
    CHECK(t.server("550 5.1.1 no\r\n") == "RCPT TO:<z@y.test>\r\n");
    CHECK(t.server("550 5.1.1 no\r\n").empty());
    CHECK(t.next == Next::kDone);
    const auto res = t.session.take_result();
    CHECK(res.per_recipient.size() == 2);
    CHECK(res.per_recipient[1].code == 550);
    CHECK_FALSE(res.mailstore_trouble);
}

TEST_CASE("SMTP: one reply after the dot is every accepted recipient's") {
    Transcript t(Dialect::kSmtp);
    t.server("220 relay\r\n");
    t.server("250-relay\r\n250 PIPELINING\r\n");
    t.begin(request({"a@x.test", "b@x.test", "c@x.test"}));
    t.server("250 2.1.0 ok\r\n");
    t.server("250 2.1.5 ok\r\n");
    t.server("550 5.1.1 unknown\r\n");
    t.server("250 2.1.5 ok\r\n");
    t.server("354 go\r\n");
    REQUIRE(t.next == Next::kSendBody);
    t.session.body_sent();
    t.server("250 2.0.0 queued as 1234\r\n");
    REQUIRE(t.next == Next::kDone);
    const auto res = t.session.take_result();
    CHECK(res.per_recipient[0].code == 250);
    CHECK(res.per_recipient[1].code == 550);
    CHECK(res.per_recipient[2].code == 250);
}

TEST_CASE("SMTP STARTTLS is sent when offered and wanted, and EHLO is repeated after it") {
    Transcript t(Dialect::kSmtp, true);
    CHECK(t.server("220 relay\r\n") == "EHLO mx1.test\r\n");
    CHECK(t.server("250-relay\r\n250-STARTTLS\r\n250 PIPELINING\r\n") == "STARTTLS\r\n");
    t.server("220 2.0.0 go ahead\r\n");
    CHECK(t.next == Next::kStartTls);
    t.next = t.session.tls_established();
    CHECK(t.session.take_output() == "EHLO mx1.test\r\n");
    CHECK(t.server("250-relay\r\n250 PIPELINING\r\n").empty());
    CHECK(t.next == Next::kReady);
    CHECK(t.session.tls_active());
}

TEST_CASE("LMTP never sends STARTTLS; SMTP continues in plain text when STARTTLS is refused") {
    Transcript lmtp(Dialect::kLmtp, true);
    lmtp.server("220 x\r\n");
    CHECK(lmtp.server("250-x\r\n250 STARTTLS\r\n").empty());
    CHECK(lmtp.next == Next::kReady);

    Transcript smtp(Dialect::kSmtp, true);
    smtp.server("220 x\r\n");
    CHECK(smtp.server("250-x\r\n250 STARTTLS\r\n") == "STARTTLS\r\n");
    smtp.server("454 4.7.0 TLS not available\r\n");
    CHECK(smtp.next == Next::kReady);
    CHECK_FALSE(smtp.session.tls_active());
}

TEST_CASE("SMTPUTF8 and 8BITMIME go on MAIL only when needed and offered") {
    Transcript t(Dialect::kLmtp);
    t.server("220 x\r\n");
    t.server("250-x\r\n250-SMTPUTF8\r\n250 8BITMIME\r\n");
    auto req = request({"jos\xC3\xA9@x.test"});
    req.smtputf8 = true;
    CHECK(t.begin(req) == "MAIL FROM:<sender@example.org> SMTPUTF8\r\n");

    Transcript plain(Dialect::kLmtp);
    plain.server("220 x\r\n");
    plain.server("250 x\r\n");
    auto eight = request({"a@x.test"});
    eight.eight_bit_mime = true;
    CHECK(plain.begin(eight) == "MAIL FROM:<sender@example.org>\r\n");
}

TEST_CASE("RET, ENVID, NOTIFY and ORCPT go to an SMTP next hop that offers DSN, which then "
          "reports; without DSN, or over LMTP, they stay and the handoff says who reports") {
    auto req = request({"a@x.test", "b@x.test"});
    req.ret = "HDRS";
    req.envid = "id 42+x";
    req.recipient_dsn = {RecipientDsn{kNotifySuccessFailure, "rfc822;A+tag@x.test"},
                         RecipientDsn{}};
    const auto envelope_after = [&](Dialect d, const char* ehlo) {
        Transcript t(d);
        t.server("220 x\r\n");
        t.server(ehlo);
        const std::string out = t.begin(req);
        // Answer the envelope and the body: every recipient delivered.
        t.server("250 2.1.0 ok\r\n");
        t.server("250 2.1.5 ok\r\n");
        t.server("250 2.1.5 ok\r\n");
        t.server("354 go\r\n");
        t.session.body_sent();
        for (int i = 0; i < (d == Dialect::kLmtp ? 2 : 1); ++i) {
            t.server("250 2.0.0 ok\r\n");
        }
        REQUIRE(t.next == Next::kDone);
        return std::pair{out, t.session.take_result().handoff};
    };
    const auto [dsn, dsn_handoff] =
        envelope_after(Dialect::kSmtp, "250-x\r\n250-DSN\r\n250 PIPELINING\r\n");
    CHECK(dsn == "MAIL FROM:<sender@example.org> RET=HDRS ENVID=id+2042+2Bx\r\n"
                 "RCPT TO:<a@x.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;A+2Btag@x.test\r\n"
                 "RCPT TO:<b@x.test>\r\nDATA\r\n");
    CHECK(dsn_handoff == Handoff::kPassedOn);

    const auto [plain, plain_handoff] =
        envelope_after(Dialect::kSmtp, "250-x\r\n250 PIPELINING\r\n");
    CHECK(plain == "MAIL FROM:<sender@example.org>\r\nRCPT TO:<a@x.test>\r\n"
                   "RCPT TO:<b@x.test>\r\nDATA\r\n");
    CHECK(plain_handoff == Handoff::kRelayed);

    const auto [lmtp, lmtp_handoff] =
        envelope_after(Dialect::kLmtp, "250-x\r\n250-DSN\r\n250 PIPELINING\r\n");
    CHECK(lmtp == "MAIL FROM:<sender@example.org>\r\nRCPT TO:<a@x.test>\r\n"
                  "RCPT TO:<b@x.test>\r\nDATA\r\n");
    CHECK(lmtp_handoff == Handoff::kFinal);
}

TEST_CASE(
    "an internationalised envelope to a server without SMTPUTF8 fails with 5.6.7, not trouble") {
    Transcript t(Dialect::kLmtp);
    t.server("220 x\r\n");
    t.server(kDovecotLhlo);
    auto req = request({"jos\xC3\xA9@x.test", "b@x.test"});
    req.smtputf8 = true;
    CHECK(t.begin(req).empty());
    CHECK(t.next == Next::kDone);
    const auto res = t.session.take_result();
    REQUIRE(res.session_reply);
    CHECK(res.session_reply->summary().starts_with("550 5.6.7"));
    CHECK(res.per_recipient.size() == 2);
    CHECK_FALSE(res.mailstore_trouble);
    CHECK(t.session.stage() == Stage::kReady);
}

TEST_CASE("MAIL refused with 4.3.x is a session failure and mailstore trouble") {
    Transcript t(Dialect::kLmtp);
    t.server("220 x\r\n");
    t.server(kDovecotLhlo);
    t.begin(request({"a@x.test", "b@x.test"}));
    t.server("451 4.3.0 Temporary internal error\r\n");
    t.server("503 5.5.1 MAIL needed first\r\n");
    t.server("503 5.5.1 MAIL needed first\r\n");
    t.server("503 5.5.1 No valid recipients\r\n");
    REQUIRE(t.next == Next::kDone);
    const auto res = t.session.take_result();
    REQUIRE(res.session_reply);
    CHECK(res.session_reply->code == 451);
    CHECK(res.mailstore_trouble);
    CHECK(res.per_recipient.size() == 2);
    CHECK(res.per_recipient[0].code == 451); // not the meaningless 503
    CHECK(t.session.usable());               // the next message starts with RSET
}

TEST_CASE("421 in the middle of a message fails it as trouble and ends the session") {
    Transcript t(Dialect::kLmtp);
    t.server("220 x\r\n");
    t.server(kDovecotLhlo);
    t.begin(request({"a@x.test"}));
    t.server("250 2.1.0 OK\r\n");
    t.server("421 4.3.2 Shutting down\r\n");
    REQUIRE(t.next == Next::kDone);
    const auto res = t.session.take_result();
    CHECK(res.mailstore_trouble);
    CHECK(res.per_recipient[0].code == 421);
    CHECK_FALSE(t.session.usable());
}

TEST_CASE("a connection lost after some LMTP final replies keeps those replies") {
    Transcript t(Dialect::kLmtp);
    t.server("220 x\r\n");
    t.server(kDovecotLhlo);
    t.begin(request({"a@x.test", "b@x.test"}));
    t.server("250 2.1.0 OK\r\n");
    t.server("250 2.1.5 OK\r\n");
    t.server("250 2.1.5 OK\r\n");
    t.server("354 OK\r\n");
    t.session.body_sent();
    t.server("250 2.0.0 Saved\r\n");
    t.next = t.session.io_failed(make_reply(451, "4.4.2", "connection lost"));
    REQUIRE(t.next == Next::kDone);
    const auto res = t.session.take_result();
    CHECK_FALSE(res.session_reply); // a would be delivered twice if it took the failure
    CHECK(res.mailstore_trouble);
    CHECK(res.per_recipient[0].code == 250);
    CHECK(res.per_recipient[1].summary() == "451 4.4.2 connection lost");
}

TEST_CASE("a refused greeting or LHLO ends the session") {
    Transcript t(Dialect::kLmtp);
    t.server("554 5.3.2 not accepting\r\n");
    CHECK(t.next == Next::kClose);
    REQUIRE(t.session.session_failure());
    CHECK(t.session.session_failure()->code == 554);

    Transcript h(Dialect::kLmtp);
    h.server("220 x\r\n");
    h.server("500 5.5.1 what\r\n");
    CHECK(h.next == Next::kClose);
}

TEST_CASE("trouble is 421, 4.3.x, 4.4.x and 451; a recipient's 4.2.2 and greylisting are not") {
    CHECK(is_trouble(make_reply(421, "4.4.2", "x")));
    CHECK(is_trouble(make_reply(451, "4.3.0", "x")));
    CHECK(is_trouble(make_reply(452, "4.3.1", "x")));
    CHECK(is_trouble(make_reply(451, "4.4.1", "x")));
    CHECK(is_trouble(make_reply(451, "4.2.0", "Internal error occurred"))); // Dovecot, storage down
    CHECK_FALSE(is_trouble(make_reply(451, "4.7.1", "greylisted")));
    CHECK_FALSE(is_trouble(make_reply(452, "4.2.2", "x")));
    CHECK_FALSE(is_trouble(make_reply(550, "5.1.1", "x")));
    CHECK_FALSE(is_trouble(make_reply(250, "2.0.0", "x")));
}

TEST_CASE("a 2xx to DATA is no delivery: trouble for every recipient, and the session ends") {
    // A broken server that says 250 to DATA never saw the body: taken as delivered, the
    // message would leave the spool with no store holding it.
    for (const Dialect d : {Dialect::kLmtp, Dialect::kSmtp}) {
        for (const char* data_reply : {"250 2.0.0 Ok\r\n", "334 what\r\n"}) {
            Transcript t(d);
            t.server("220 x\r\n");
            t.server(kDovecotLhlo);
            t.begin(request({"a@x.test", "b@x.test"}));
            t.server("250 2.1.0 OK\r\n");
            t.server("250 2.1.5 OK\r\n");
            t.server("250 2.1.5 OK\r\n");
            t.server(data_reply);
            REQUIRE_MESSAGE(t.next == Next::kDone, data_reply);
            const auto res = t.session.take_result();
            CHECK(res.mailstore_trouble);
            for (const auto& r : res.per_recipient) {
                CHECK_MESSAGE(r.code == 451, r.summary());
                CHECK(r.enhanced == "4.4.0");
            }
            CHECK_FALSE(t.session.usable());
        }
    }
}

TEST_CASE("a 3xx after the dot is no delivery, in LMTP and SMTP") {
    for (const Dialect d : {Dialect::kLmtp, Dialect::kSmtp}) {
        Transcript t(d);
        t.server("220 x\r\n");
        t.server(kDovecotLhlo);
        t.begin(request({"a@x.test"}));
        t.server("250 2.1.0 OK\r\n");
        t.server("250 2.1.5 OK\r\n");
        t.server("354 OK\r\n");
        REQUIRE(t.next == Next::kSendBody);
        t.session.body_sent();
        t.server("354 again\r\n");
        REQUIRE(t.next == Next::kDone);
        const auto res = t.session.take_result();
        CHECK(res.mailstore_trouble);
        CHECK(res.per_recipient[0].code == 451);
        CHECK_FALSE(t.session.usable());
    }
}
