#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/connect_pair.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include "io/timed.hpp"

namespace asio = boost::asio;
using Socket = asio::local::stream_protocol::socket;
using namespace std::chrono_literals;
using spoold::io::IoResult;

namespace {

// Longer than any run of these tests: a result that depends on this timer firing would
// hang the test instead of passing by luck.
constexpr auto kNever = 3600s;

struct Pair {
    asio::io_context io;
    Socket a{io};
    Socket b{io};
    asio::steady_timer timer{io};
    Pair() { asio::local::connect_pair(a, b); }

    IoResult run(asio::awaitable<IoResult> op) {
        std::optional<IoResult> out;
        asio::co_spawn(io, std::move(op), [&out](const std::exception_ptr& e, IoResult r) {
            REQUIRE_FALSE(e);
            out = r;
        });
        io.run();
        REQUIRE(out);
        return *out;
    }
};

} // namespace

TEST_CASE("a read with bytes waiting returns them before the deadline") {
    Pair p;
    const std::string sent = "220 ready\r\n";
    asio::write(p.b, asio::buffer(sent));
    std::string buf(64, '\0');
    const IoResult r = p.run(spoold::io::read_some_for(&p.a, &p.timer, asio::buffer(buf), kNever));
    CHECK_FALSE(r.timed_out);
    CHECK_FALSE(r.ec);
    CHECK(buf.substr(0, r.bytes) == sent);
}

TEST_CASE("a read with nothing to read ends when the caller's timer fires") {
    Pair p;
    std::string buf(64, '\0');
    p.timer.expires_after(1ms);
    const IoResult r = p.run(spoold::io::read_some(&p.a, &p.timer, asio::buffer(buf)));
    CHECK(r.timed_out);
    CHECK(r.bytes == 0);
}

TEST_CASE("a read of a closed peer reports the end of the stream, not a timeout") {
    Pair p;
    p.b.close();
    std::string buf(64, '\0');
    const IoResult r = p.run(spoold::io::read_some_for(&p.a, &p.timer, asio::buffer(buf), kNever));
    CHECK_FALSE(r.timed_out);
    CHECK(r.ec == asio::error::eof);
}

TEST_CASE("a write sends all of its buffer") {
    Pair p;
    const std::string data(100'000, 'x'); // more than one write of a socket buffer may take
    std::string got;
    std::string chunk(65536, '\0');
    // The peer reads on a thread of its own while the write runs on the io_context.
    std::thread reader([&] {
        boost::system::error_code ec;
        while (got.size() < data.size()) {
            const std::size_t n = p.b.read_some(asio::buffer(chunk), ec);
            if (ec) {
                break;
            }
            got.append(chunk, 0, n);
        }
    });
    const IoResult r = p.run(spoold::io::write_all_for(&p.a, &p.timer, asio::buffer(data), kNever));
    reader.join();
    CHECK_FALSE(r.timed_out);
    CHECK_FALSE(r.ec);
    CHECK(r.bytes == data.size());
    CHECK(got == data);
}

TEST_CASE("a write the peer never reads ends when the caller's timer fires") {
    Pair p;
    const std::string data(16 * 1024 * 1024, 'x'); // more than the socket buffers hold
    p.timer.expires_after(50ms);
    const IoResult r = p.run(spoold::io::write_all(&p.a, &p.timer, asio::buffer(data)));
    CHECK(r.timed_out);
}
