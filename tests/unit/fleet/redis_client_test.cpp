#include <doctest/doctest.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "fleet/redis_client.hpp"
#include "fleet/redis_reply.hpp"
#include "tests/unit/fleet/redis_server.hpp"

using namespace spoold;
using namespace spoold::fleet;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

asio::awaitable<Result<RedisReply>> one(RedisClient* client, std::vector<std::string> args) {
    co_return co_await client->command(std::move(args));
}

// Three commands in flight at once: their replies come back to the right callers.
asio::awaitable<std::vector<std::string>> pipelined(RedisClient* client) {
    using namespace asio::experimental::awaitable_operators;
    // Named first: g++ 12 rejects a braced list inside a co_await expression.
    auto set_call = one(client, {"SET", "k1", "one"});
    auto first_call = one(client, {"ECHO", "first"});
    auto second_call = one(client, {"ECHO", "second"});
    auto [set, first, second] =
        co_await (std::move(set_call) && std::move(first_call) && std::move(second_call));
    co_return std::vector<std::string>{set ? set->str : "error", first ? first->str : "error",
                                       second ? second->str : "error"};
}

const char* kEcho = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}";

} // namespace

TEST_CASE("replies decode into values: strings, integers, nil, errors and arrays") {
    ReplyDecoder d;
    REQUIRE(d.feed("+OK\r\n:42\r\n$-1\r\n-ERR wrong\r\n*2\r\n$3\r\nabc\r\n:7\r\n$5\r\nhel"));
    auto status = d.next();
    REQUIRE(status);
    REQUIRE(*status);
    CHECK((*status)->type == RedisReply::Type::kStatus);
    CHECK((*status)->text() == "OK");
    CHECK((*d.next())->as_int() == 42);
    CHECK((*d.next())->type == RedisReply::Type::kNil);
    auto error = *d.next();
    CHECK(error->is_error());
    CHECK(error->str == "ERR wrong");
    auto array = *d.next();
    REQUIRE(array->elements.size() == 2);
    CHECK(array->at(0).str == "abc");
    CHECK(array->at(1).as_int() == 7);
    CHECK(array->at(5).type == RedisReply::Type::kNil);
    CHECK_FALSE(*d.next()); // "$5\r\nhel" is not whole yet
    REQUIRE(d.feed("lo\r\n"));
    CHECK((*d.next())->str == "hello");
    ReplyDecoder bad;
    REQUIRE(bad.feed("?garbage\r\n"));
    auto broken = bad.next();
    CHECK_FALSE(broken);
    CHECK(broken.error().kind == ErrorKind::kProtocol);
}

TEST_CASE("commands are encoded as arrays of bulk strings, binary-safe") {
    CHECK(encode_command({"SET", "k", std::string("a\r\nb\0c", 6)}) ==
          std::string("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\na\r\nb\0c\r\n", 32));
}

TEST_CASE("a client talks to a real redis-server over its Unix socket, pipelining in order") {
    test::RedisServer redis;
    asio::io_context io;
    RedisClient client(io.get_executor(), redis.endpoint(), 2s);
    auto replies = test::run(io, pipelined(&client));
    CHECK(replies == std::vector<std::string>{"OK", "first", "second"});
    auto get = test::run(io, one(&client, {"GET", "k1"}));
    REQUIRE(get);
    CHECK(get->str == "one");
    CHECK(client.connected());
    CHECK(client.requests_sent() == 4);
}

TEST_CASE("a script runs by EVALSHA and is loaded again with EVAL after SCRIPT FLUSH") {
    test::RedisServer redis;
    asio::io_context io;
    RedisClient client(io.get_executor(), redis.endpoint(), 2s);
    auto script = std::make_shared<const RedisScript>(kEcho);
    CHECK(script->sha1.size() == 40);
    auto eval = [&](std::string arg) {
        return test::run(io, client.eval(script, {"counter"}, {std::move(arg)}));
    };
    auto first = eval("a"); // unknown to Redis: NOSCRIPT, then EVAL
    REQUIRE(first);
    REQUIRE_FALSE(first->is_error());
    CHECK(first->at(0).str == "counter");
    CHECK(first->at(1).str == "a");
    CHECK(first->at(2).as_int() == 1);
    const auto sent = client.requests_sent();
    auto second = eval("b"); // cached now: one EVALSHA
    REQUIRE(second);
    CHECK(second->at(2).as_int() == 2);
    CHECK(client.requests_sent() == sent + 1);
    REQUIRE(test::run(io, one(&client, {"SCRIPT", "FLUSH"})));
    auto third = eval("c");
    REQUIRE(third);
    CHECK(third->at(2).as_int() == 3);
}

TEST_CASE("no Redis: a call fails with kUnavailable at once, and again without retrying") {
    test::RedisServer redis;
    const RedisEndpoint ep = redis.endpoint();
    redis.stop();
    asio::io_context io;
    RedisClient client(io.get_executor(), ep, 2s);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = test::run(io, one(&client, {"PING"}));
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kUnavailable);
    auto again = test::run(io, one(&client, {"PING"}));
    REQUIRE_FALSE(again);
    CHECK(again.error().kind == ErrorKind::kUnavailable);
    CHECK(std::chrono::steady_clock::now() - t0 < 1s);
    CHECK(client.requests_sent() == 1); // the second was refused without a connect
}

TEST_CASE("a server that never answers costs one timeout, then the client reconnects") {
    test::RedisServer redis;
    // A Unix socket that accepts and never replies: a hung Redis.
    const std::string hung = redis.socket() + ".hung";
    asio::io_context io;
    asio::local::stream_protocol::acceptor acceptor(io,
                                                    asio::local::stream_protocol::endpoint(hung));
    asio::local::stream_protocol::socket peer(io);
    acceptor.async_accept(peer, [](const boost::system::error_code&) {});
    RedisEndpoint ep;
    ep.socket = hung;
    RedisClient client(io.get_executor(), ep, 200ms);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = test::run(io, one(&client, {"PING"}));
    const auto took = std::chrono::steady_clock::now() - t0;
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == ErrorKind::kTimeout);
    CHECK(took >= 200ms);
    CHECK(took < 2s);
    CHECK_FALSE(client.connected());
}

TEST_CASE("after Redis restarts, the next call connects again") {
    test::RedisServer redis;
    asio::io_context io;
    RedisClient client(io.get_executor(), redis.endpoint(), 1s);
    REQUIRE(test::run(io, one(&client, {"SET", "k", "v"})));
    redis.stop();
    auto lost = test::run(io, one(&client, {"GET", "k"}));
    REQUIRE_FALSE(lost);
    CHECK(lost.error().kind == ErrorKind::kUnavailable);
    redis.start();
    // Within the connect backoff calls fail at once; a later one reconnects.
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    Result<RedisReply> r = fail(ErrorKind::kUnavailable, "not yet");
    while (!r && std::chrono::steady_clock::now() < deadline) {
        r = test::run(io, one(&client, {"PING"}));
        if (!r) {
            asio::steady_timer pause(io, 50ms);
            pause.wait();
        }
    }
    REQUIRE(r);
    CHECK(r->text() == "PONG");
}
