// One read or one write raced against a deadline timer, for the Asio drivers (the SMTP
// server, the mailstore connections, the milter client): the loser is cancelled through its
// cancellation slot, and errors come back as values. Holds no buffers and owns no timer.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstddef>
#include <utility>
#include <variant>

namespace spoold::io {

struct IoResult {
    boost::system::error_code ec;
    std::size_t bytes = 0;
    // The timer's wait ended first: it expired, or its owner cancelled it to wake the
    // caller (a stop); the caller tells the two apart. `ec` and `bytes` are then unset.
    bool timed_out = false;
};

namespace detail {

inline constexpr auto kUseTuple = boost::asio::as_tuple(boost::asio::use_awaitable);

template <typename Op>
boost::asio::awaitable<IoResult> race(Op op, boost::asio::steady_timer* timer) {
    using namespace boost::asio::experimental::awaitable_operators;
    auto r = co_await (std::move(op) || timer->async_wait(kUseTuple));
    if (r.index() == 1) {
        co_return IoResult{{}, 0, true};
    }
    const auto& [ec, n] = std::get<0>(r);
    co_return IoResult{ec, n, false};
}

} // namespace detail

// Some bytes into `buf`, unless `timer` (armed by the caller: one deadline may cover
// several reads) fires first. The stream, timer and buffer must outlive the await.
template <typename Stream>
boost::asio::awaitable<IoResult> read_some(Stream* stream, boost::asio::steady_timer* timer,
                                           boost::asio::mutable_buffer buf) {
    co_return co_await detail::race(stream->async_read_some(buf, detail::kUseTuple), timer);
}

// All of `buf`, unless `timer` (armed by the caller) fires first.
template <typename Stream>
boost::asio::awaitable<IoResult> write_all(Stream* stream, boost::asio::steady_timer* timer,
                                           boost::asio::const_buffer buf) {
    co_return co_await detail::race(boost::asio::async_write(*stream, buf, detail::kUseTuple),
                                    timer);
}

// The same with the timer armed here for `timeout` from now.
template <typename Stream>
boost::asio::awaitable<IoResult> read_some_for(Stream* stream, boost::asio::steady_timer* timer,
                                               boost::asio::mutable_buffer buf,
                                               std::chrono::steady_clock::duration timeout) {
    timer->expires_after(timeout);
    co_return co_await read_some(stream, timer, buf);
}

template <typename Stream>
boost::asio::awaitable<IoResult> write_all_for(Stream* stream, boost::asio::steady_timer* timer,
                                               boost::asio::const_buffer buf,
                                               std::chrono::steady_clock::duration timeout) {
    timer->expires_after(timeout);
    co_return co_await write_all(stream, timer, buf);
}

} // namespace spoold::io
