#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <cstdlib>

#include "drain/connectors/connectors.hpp"
#include "drain/connectors/wire_mailstore.hpp"
#include "tests/unit/connectors/connector_test_support.hpp"
#include "tests/unit/connectors/fake_lmtp_server.hpp"

using namespace spoold;
using namespace spoold::drain;
using namespace spoold::drain::connectors;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

policy::MailstoreConfig smtp_config(std::uint16_t port) {
    policy::MailstoreConfig c;
    c.name = "relay";
    c.kind = policy::MailstoreKind::kSmtp;
    c.host = "127.0.0.1";
    c.port = port;
    c.connect_timeout = 2s;
    c.command_timeout = 400ms;
    c.data_timeout = 1s;
    return c;
}

// A throw-away self-signed certificate for the fake server (the client does not
// verify by default, which is what these tests also show).
std::shared_ptr<asio::ssl::context> server_tls(const test::TempDir& dir) {
    const std::string key = (dir.path() / "key.pem").string();
    const std::string cert = (dir.path() / "cert.pem").string();
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
        "-keyout " +
        key + " -out " + cert + " -subj /CN=localhost -days 1 >/dev/null 2>&1";
    REQUIRE(std::system(cmd.c_str()) == 0);
    auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
    ctx->use_certificate_chain_file(cert);
    ctx->use_private_key_file(key, asio::ssl::context::pem);
    return ctx;
}

} // namespace

TEST_CASE("SMTP: EHLO and one reply after the dot for every accepted recipient") {
    asio::io_context ctx;
    test::FakeLmtpScript script;
    script.smtp = true;
    script.rcpt["nobody@x.test"] = "550 5.1.1 no such user\r\n";
    test::FakeLmtpServer<tcp> server(ctx, {asio::ip::make_address("127.0.0.1"), 0}, script);
    auto store = make_mailstore(ctx.get_executor(), smtp_config(server.endpoint().port()));
    const auto res =
        test::run(ctx, store->deliver(test::make_request({"a@x.test", "nobody@x.test", "b@x.test"},
                                                         "Subject: s\r\n\r\nbody\r\n")));
    CHECK_FALSE(res.mailstore_trouble);
    REQUIRE(res.per_recipient.size() == 3);
    CHECK(res.per_recipient[0].code == 250);
    CHECK(res.per_recipient[1].code == 550);
    CHECK(res.per_recipient[2].code == 250);
    CHECK(server.log().commands.at(0) == "EHLO localhost");
    CHECK(server.log().bodies == std::vector<std::string>{"Subject: s\r\n\r\nbody\r\n"});
}

TEST_CASE("SMTP STARTTLS is used when offered, and the message goes through TLS") {
    test::TempDir dir;
    asio::io_context ctx;
    test::FakeLmtpScript script;
    script.smtp = true;
    script.tls = server_tls(dir);
    test::FakeLmtpServer<tcp> server(ctx, {asio::ip::make_address("127.0.0.1"), 0}, script);
    auto store = make_mailstore(ctx.get_executor(), smtp_config(server.endpoint().port()));
    const auto res = test::run(ctx, store->deliver(test::make_request({"a@x.test"}, "secret\r\n")));
    CHECK(res.per_recipient.at(0).code == 250);
    CHECK(server.log().tls_sessions == 1);
    CHECK(server.log().commands ==
          std::vector<std::string>{"EHLO localhost", "STARTTLS", "EHLO localhost",
                                   "MAIL FROM:<sender@example.org>", "RCPT TO:<a@x.test>", "DATA"});
    // Reused over TLS for the next message.
    const auto again =
        test::run(ctx, store->deliver(test::make_request({"b@x.test"}, "again\r\n")));
    CHECK(again.per_recipient.at(0).code == 250);
    CHECK(server.log().connections == 1);
}

TEST_CASE("with starttls off the client stays in plain text even when it is offered") {
    test::TempDir dir;
    asio::io_context ctx;
    test::FakeLmtpScript script;
    script.smtp = true;
    script.tls = server_tls(dir);
    test::FakeLmtpServer<tcp> server(ctx, {asio::ip::make_address("127.0.0.1"), 0}, script);
    auto config = smtp_config(server.endpoint().port());
    config.starttls = false;
    auto store = make_mailstore(ctx.get_executor(), config);
    CHECK(test::run(ctx, store->deliver(test::make_request({"a@x.test"}, "x\r\n")))
              .per_recipient.at(0)
              .code == 250);
    CHECK(server.log().tls_sessions == 0);
}

TEST_CASE("a server that stalls in the TLS handshake or after it times out as trouble") {
    test::TempDir dir;
    for (const bool in_handshake : {true, false}) {
        asio::io_context ctx;
        test::FakeLmtpScript script;
        script.smtp = true;
        script.tls = server_tls(dir);
        script.stall_tls_handshake = in_handshake;
        script.stall_after_tls = !in_handshake;
        test::FakeLmtpServer<tcp> server(ctx, {asio::ip::make_address("127.0.0.1"), 0}, script);
        auto store = make_mailstore(ctx.get_executor(), smtp_config(server.endpoint().port()));
        const auto started = std::chrono::steady_clock::now();
        const auto res = test::run(ctx, store->deliver(test::make_request({"a@x.test"}, "x\r\n")));
        CHECK_MESSAGE(res.mailstore_trouble, in_handshake);
        CHECK(res.per_recipient.at(0).transient());
        CHECK(std::chrono::steady_clock::now() - started < 3s);
    }
}

TEST_CASE("the smarthost for DSNs is an SMTP mailstore with its own STARTTLS setting") {
    test::TempDir dir;
    asio::io_context ctx;
    test::FakeLmtpScript script;
    script.smtp = true;
    script.tls = server_tls(dir);
    test::FakeLmtpServer<tcp> server(ctx, {asio::ip::make_address("127.0.0.1"), 0}, script);
    policy::BounceConfig bounces;
    bounces.smarthost = "127.0.0.1";
    bounces.smarthost_port = server.endpoint().port();
    bounces.smarthost_starttls = false; // the mailstores' default (true) is not borrowed
    auto store = make_smarthost(ctx.get_executor(), bounces);
    CHECK(store->name() == "smarthost");
    auto req = test::make_request({"bounce-to@x.test"}, "DSN\r\n");
    req.mail_from = "";
    CHECK(test::run(ctx, store->deliver(req)).per_recipient.at(0).code == 250);
    CHECK(server.log().commands.at(1) == "MAIL FROM:<>");
    CHECK(server.log().tls_sessions == 0);
}

TEST_CASE("a smarthost that stalls times out by its own command timeout") {
    asio::io_context ctx;
    test::FakeLmtpScript script;
    script.smtp = true;
    script.stall = true;
    test::FakeLmtpServer<tcp> server(ctx, {asio::ip::make_address("127.0.0.1"), 0}, script);
    policy::BounceConfig bounces;
    bounces.smarthost = "127.0.0.1";
    bounces.smarthost_port = server.endpoint().port();
    bounces.smarthost_connect_timeout = 300ms; // the defaults are 10 s and 60 s
    bounces.smarthost_command_timeout = 300ms;
    auto store = make_smarthost(ctx.get_executor(), bounces);
    const auto started = std::chrono::steady_clock::now();
    const auto res = test::run(ctx, store->deliver(test::make_request({"a@x.test"}, "x\r\n")));
    CHECK(res.mailstore_trouble);
    // Well under the 10 s the shortest default timeout would take.
    CHECK(std::chrono::steady_clock::now() - started < 5s);
}
