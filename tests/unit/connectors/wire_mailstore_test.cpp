#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>

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

policy::MailstoreConfig lmtp_config(std::uint16_t port) {
    policy::MailstoreConfig c;
    c.name = "fake";
    c.kind = policy::MailstoreKind::kLmtp;
    c.host = "127.0.0.1";
    c.port = port;
    c.connect_timeout = 2s;
    c.command_timeout = 300ms;
    c.data_timeout = 1s;
    return c;
}

const std::string kBody =
    "Subject: hi\r\n\r\nline one\r\n.starts with a dot\r\n..two dots\r\nlast\r\n";

} // namespace

TEST_CASE(
    "LMTP over TCP: one recipient delivered, one over quota, one unknown, in one transaction") {
    asio::io_context ctx;
    test::FakeLmtpScript script;
    script.rcpt["unknown@x.test"] = "550 5.1.1 <unknown@x.test> User doesn't exist\r\n";
    script.final["full@x.test"] = "452 4.2.2 <full@x.test> Quota exceeded\r\n";
    test::FakeLmtpServer<tcp> server(ctx, {asio::ip::make_address("127.0.0.1"), 0}, script);
    ConnectorOptions options;
    options.body_piece_bytes = 7; // many pieces: dot-stuffing across piece boundaries
    LmtpMailstore store(ctx.get_executor(), lmtp_config(server.endpoint().port()), options);

    const auto res = test::run(ctx, store.deliver(test::make_request(
                                        {"ok@x.test", "full@x.test", "unknown@x.test"}, kBody)));
    CHECK_FALSE(res.session_reply);
    CHECK_FALSE(res.mailstore_trouble);
    REQUIRE(res.per_recipient.size() == 3);
    CHECK(res.per_recipient[0].code == 250);
    CHECK(res.per_recipient[1].summary() == "452 4.2.2 <full@x.test> Quota exceeded");
    CHECK(res.per_recipient[2].code == 550);
    CHECK(res.per_recipient[2].enhanced == "5.1.1");
    REQUIRE(server.log().bodies.size() == 1);
    CHECK(server.log().bodies[0] == kBody);
}

TEST_CASE("two messages go over one reused connection with RSET between them") {
    asio::io_context ctx;
    test::FakeLmtpServer<tcp> server(ctx, {asio::ip::make_address("127.0.0.1"), 0}, {});
    LmtpMailstore store(ctx.get_executor(), lmtp_config(server.endpoint().port()), {});

    const auto first = test::run(ctx, store.deliver(test::make_request({"a@x.test"}, "one\r\n")));
    const auto second = test::run(ctx, store.deliver(test::make_request({"b@x.test"}, "two\r\n")));
    CHECK(first.per_recipient.at(0).code == 250);
    CHECK(second.per_recipient.at(0).code == 250);
    CHECK(server.log().connections == 1);
    CHECK(store.connections_opened() == 1);
    CHECK(store.idle_connections() == 1);
    CHECK(std::count(server.log().commands.begin(), server.log().commands.end(), "RSET") == 1);
    CHECK(server.log().bodies == std::vector<std::string>{"one\r\n", "two\r\n"});
}

TEST_CASE("a pooled connection the server dropped is retried once on a fresh one") {
    asio::io_context ctx;
    test::FakeLmtpScript script;
    script.close_after_message = true;
    test::FakeLmtpServer<tcp> server(ctx, {asio::ip::make_address("127.0.0.1"), 0}, script);
    LmtpMailstore store(ctx.get_executor(), lmtp_config(server.endpoint().port()), {});

    CHECK(test::run(ctx, store.deliver(test::make_request({"a@x.test"}, "one\r\n")))
              .per_recipient.at(0)
              .code == 250);
    const auto second = test::run(ctx, store.deliver(test::make_request({"b@x.test"}, "two\r\n")));
    CHECK(second.per_recipient.at(0).code == 250);
    CHECK_FALSE(second.mailstore_trouble);
    CHECK(store.connections_opened() == 2);
    CHECK(server.log().bodies.size() == 2);
}

TEST_CASE("a server that accepts and then stalls times out as mailstore trouble") {
    asio::io_context ctx;
    test::FakeLmtpScript script;
    script.stall = true;
    test::FakeLmtpServer<tcp> server(ctx, {asio::ip::make_address("127.0.0.1"), 0}, script);
    LmtpMailstore store(ctx.get_executor(), lmtp_config(server.endpoint().port()), {});

    const auto started = std::chrono::steady_clock::now();
    const auto res =
        test::run(ctx, store.deliver(test::make_request({"a@x.test", "b@x.test"}, "x\r\n")));
    const auto took = std::chrono::steady_clock::now() - started;
    CHECK(res.mailstore_trouble);
    REQUIRE(res.session_reply);
    CHECK(res.session_reply->enhanced.starts_with("4.4."));
    CHECK(res.per_recipient.size() == 2);
    CHECK(took < 2s); // the 300 ms command timeout, not a hang

    const auto probe = test::run(ctx, store.probe());
    REQUIRE_FALSE(probe);
    CHECK(probe.error().kind == ErrorKind::kTimeout);
}

TEST_CASE("a refused connection is mailstore trouble and probe() reports it") {
    asio::io_context ctx;
    std::uint16_t port = 0;
    {
        tcp::acceptor a(ctx, {asio::ip::make_address("127.0.0.1"), 0});
        port = a.local_endpoint().port();
    } // closed: nothing listens there now
    LmtpMailstore store(ctx.get_executor(), lmtp_config(port), {});
    const auto res = test::run(ctx, store.deliver(test::make_request({"a@x.test"}, "x\r\n")));
    CHECK(res.mailstore_trouble);
    REQUIRE(res.session_reply);
    CHECK(res.session_reply->summary().starts_with("451 4.4.1"));
    CHECK(res.per_recipient.at(0).code == 451);
    const auto probe = test::run(ctx, store.probe());
    REQUIRE_FALSE(probe);
    CHECK(probe.error().kind == ErrorKind::kUnavailable);
}

TEST_CASE("probe() says LHLO and QUIT to a healthy server") {
    asio::io_context ctx;
    test::FakeLmtpServer<tcp> server(ctx, {asio::ip::make_address("127.0.0.1"), 0}, {});
    auto store = make_mailstore(ctx.get_executor(), lmtp_config(server.endpoint().port()));
    CHECK(test::run(ctx, store->probe()));
    CHECK(server.log().commands == std::vector<std::string>{"LHLO localhost", "QUIT"});
}

TEST_CASE("LMTP over a Unix socket delivers like TCP") {
    asio::io_context ctx;
    test::TempDir dir;
    const std::string path = (dir.path() / "lmtp").string();
    test::FakeLmtpServer<asio::local::stream_protocol> server(
        ctx, asio::local::stream_protocol::endpoint(path), {});
    auto config = lmtp_config(0);
    config.unix_socket = path;
    LmtpMailstore store(ctx.get_executor(), config, {});
    const auto res =
        test::run(ctx, store.deliver(test::make_request({"a@x.test", "b@x.test"}, kBody)));
    CHECK_FALSE(res.mailstore_trouble);
    CHECK(res.per_recipient.at(0).code == 250);
    CHECK(res.per_recipient.at(1).code == 250);
    REQUIRE(server.log().bodies.size() == 1);
    CHECK(server.log().bodies[0] == kBody);
}

TEST_CASE("a 421 after the envelope fails the message as trouble and drops the connection") {
    asio::io_context ctx;
    test::FakeLmtpScript script;
    script.rcpt["a@x.test"] = "421 4.3.2 Shutting down\r\n";
    test::FakeLmtpServer<tcp> server(ctx, {asio::ip::make_address("127.0.0.1"), 0}, script);
    LmtpMailstore store(ctx.get_executor(), lmtp_config(server.endpoint().port()), {});
    const auto res = test::run(ctx, store.deliver(test::make_request({"a@x.test"}, "x\r\n")));
    CHECK(res.mailstore_trouble);
    CHECK(res.per_recipient.at(0).code == 421);
    CHECK(store.idle_connections() == 0);
}

TEST_CASE("idle pooled connections are closed after the idle bound") {
    asio::io_context ctx;
    test::FakeLmtpServer<tcp> server(ctx, {asio::ip::make_address("127.0.0.1"), 0}, {});
    ConnectorOptions options;
    options.idle_timeout = 100ms;
    LmtpMailstore store(ctx.get_executor(), lmtp_config(server.endpoint().port()), options);
    CHECK(test::run(ctx, store.deliver(test::make_request({"a@x.test"}, "x\r\n")))
              .per_recipient.at(0)
              .code == 250);
    CHECK(store.idle_connections() == 1);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (store.idle_connections() > 0 && std::chrono::steady_clock::now() < deadline) {
        ctx.restart();
        ctx.run_for(20ms);
    }
    CHECK(store.idle_connections() == 0);
    // The next message opens a fresh connection.
    CHECK(test::run(ctx, store.deliver(test::make_request({"b@x.test"}, "y\r\n")))
              .per_recipient.at(0)
              .code == 250);
    CHECK(store.connections_opened() == 2);
}
