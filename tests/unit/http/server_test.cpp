#include <doctest/doctest.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <stdexcept>

#include "common/metrics.hpp"
#include "daemon/http/server.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using spoold::http::HttpServer;

namespace {

constexpr auto kTestDeadline = std::chrono::seconds(10);
constexpr auto kClientTimeout = std::chrono::seconds(5);

struct Exchange {
    bhttp::verb verb = bhttp::verb::get;
    std::string target;
    std::string extra_header; // a header value too large, for the limit test
    bool done = false;
    bool closed_without_reply = false;
    unsigned status = 0;
    std::string content_type;
    std::string content_length;
    std::string csp;
    std::string body;
};

asio::awaitable<void> exchange(std::uint16_t port, Exchange* ex) {
    beast::tcp_stream stream(co_await asio::this_coro::executor);
    stream.expires_after(kClientTimeout);
    co_await stream.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                  asio::use_awaitable);
    bhttp::request<bhttp::empty_body> req{ex->verb, ex->target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    if (!ex->extra_header.empty()) {
        req.set("X-Big", ex->extra_header);
    }
    co_await bhttp::async_write(stream, req, asio::use_awaitable);
    beast::flat_buffer buffer;
    bhttp::response_parser<bhttp::string_body> parser;
    parser.skip(ex->verb == bhttp::verb::head);
    auto [ec, n] =
        co_await bhttp::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
    (void)n;
    ex->done = true;
    if (ec) {
        ex->closed_without_reply = true;
        co_return;
    }
    const auto& res = parser.get();
    ex->status = res.result_int();
    ex->content_type = std::string(res[bhttp::field::content_type]);
    ex->content_length = std::string(res[bhttp::field::content_length]);
    ex->csp = std::string(res["Content-Security-Policy"]);
    ex->body = res.body();
}

void rethrow(std::exception_ptr e) {
    if (e) {
        std::rethrow_exception(e);
    }
}

// Starts a server on 127.0.0.1:0, runs one exchange against it within the deadline.
Exchange run_one(bhttp::verb verb, std::string target, spoold::http::StatusSource status = {},
                 std::string extra_header = {}) {
    asio::io_context ioc;
    if (!status) {
        status = [] { return std::string("{\"version\":\"test\"}"); };
    }
    HttpServer server(ioc.get_executor(), "127.0.0.1", 0, std::move(status));
    const auto port = server.start();
    REQUIRE(port.has_value());
    CHECK(*port != 0);
    Exchange ex;
    ex.verb = verb;
    ex.target = std::move(target);
    ex.extra_header = std::move(extra_header);
    asio::co_spawn(ioc, exchange(*port, &ex), [&server](std::exception_ptr e) {
        server.stop();
        rethrow(e);
    });
    ioc.run_for(kTestDeadline);
    CHECK(ex.done);
    return ex;
}

} // namespace

TEST_CASE("GET /metrics serves the global registry in the Prometheus text format") {
    spoold::metrics::spoold_metrics().smtp_connections_total.inc();
    const auto ex = run_one(bhttp::verb::get, "/metrics");
    CHECK(ex.status == 200);
    CHECK(ex.content_type == "text/plain; version=0.0.4; charset=utf-8");
    CHECK(ex.body.find("# TYPE spoold_smtp_connections_total counter\n") != std::string::npos);
}

TEST_CASE("GET /status serves what the StatusSource returns, as JSON") {
    const auto ex =
        run_one(bhttp::verb::get, "/status?x=1", [] { return std::string("{\"backlog\":42}"); });
    CHECK(ex.status == 200);
    CHECK(ex.content_type == "application/json");
    CHECK(ex.body == "{\"backlog\":42}");
}

TEST_CASE("a StatusSource that throws gives a 500, and the server keeps running") {
    const auto ex = run_one(bhttp::verb::get, "/status",
                            []() -> std::string { throw std::runtime_error("spool closed"); });
    CHECK(ex.status == 500);
}

TEST_CASE("GET / serves the page with a policy that forbids outside resources") {
    const auto ex = run_one(bhttp::verb::get, "/");
    CHECK(ex.status == 200);
    CHECK(ex.content_type == "text/html; charset=utf-8");
    CHECK(ex.body.starts_with("<!doctype html>"));
    CHECK(ex.csp.find("default-src 'none'") != std::string::npos);
}

TEST_CASE("HEAD gives the headers and length of GET without a body") {
    const auto ex = run_one(bhttp::verb::head, "/");
    CHECK(ex.status == 200);
    CHECK(ex.body.empty());
    CHECK(std::stoul(ex.content_length) > 1000);
}

TEST_CASE("an unknown path is 404 and another method is 405") {
    CHECK(run_one(bhttp::verb::get, "/nope").status == 404);
    CHECK(run_one(bhttp::verb::post, "/metrics").status == 405);
    CHECK(run_one(bhttp::verb::delete_, "/status").status == 405);
}

TEST_CASE("a request header beyond the limit is refused without a reply") {
    const auto ex = run_one(bhttp::verb::get, "/", {},
                            std::string(spoold::http::kMaxRequestHeaderBytes + 100, 'a'));
    CHECK(ex.closed_without_reply);
}

TEST_CASE("a bad address is an error from start(), not an exception") {
    asio::io_context ioc;
    HttpServer server(ioc.get_executor(), "not-an-address", 0, [] { return std::string(); });
    const auto port = server.start();
    REQUIRE_FALSE(port.has_value());
    CHECK(port.error().kind == spoold::ErrorKind::kInvalid);
}

namespace {
asio::awaitable<void> idle_then_stop(std::uint16_t port, HttpServer* server, bool* closed) {
    beast::tcp_stream stream(co_await asio::this_coro::executor);
    stream.expires_after(kClientTimeout);
    co_await stream.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port),
                                  asio::use_awaitable);
    bhttp::request<bhttp::empty_body> req{bhttp::verb::get, "/metrics", 11};
    req.set(bhttp::field::host, "127.0.0.1");
    co_await bhttp::async_write(stream, req, asio::use_awaitable);
    beast::flat_buffer buffer;
    bhttp::response<bhttp::string_body> res;
    co_await bhttp::async_read(stream, buffer, res, asio::use_awaitable);
    // The connection is now idle in keep-alive; stop() must close it, not wait 10 s.
    server->stop();
    char byte = 0;
    auto [ec, n] = co_await stream.socket().async_read_some(asio::buffer(&byte, 1),
                                                            asio::as_tuple(asio::use_awaitable));
    *closed = ec && n == 0;
}
} // namespace

TEST_CASE("stop() closes idle keep-alive connections and lets the executor run out of work") {
    asio::io_context ioc;
    HttpServer server(ioc.get_executor(), "127.0.0.1", 0, [] { return std::string("{}"); });
    const auto port = server.start();
    REQUIRE(port.has_value());
    bool closed = false;
    asio::co_spawn(ioc, idle_then_stop(*port, &server, &closed), rethrow);
    const auto started = std::chrono::steady_clock::now();
    ioc.run_for(kTestDeadline);
    CHECK(closed);
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(3));
    CHECK(ioc.stopped()); // ran out of work: no coroutine left behind
}
