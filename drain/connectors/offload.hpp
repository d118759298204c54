// Runs a blocking function on another executor (a thread pool) and resumes the
// awaiting coroutine on its own executor with the result. For file I/O that must not
// stall the io_context; not for anything that touches Asio objects of the caller.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <functional>
#include <utility>

namespace spoold::drain::connectors {

namespace detail {

template <typename R> struct OffloadInitiation {
    template <typename Handler>
    void operator()(Handler handler, boost::asio::any_io_executor pool,
                    std::function<R()> fn) const {
        // The work guard keeps the caller's io_context running while the pool works.
        auto work = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
        boost::asio::post(pool, [handler = std::move(handler), work = std::move(work),
                                 fn = std::move(fn)]() mutable {
            R result = fn();
            auto executor = work.get_executor();
            boost::asio::dispatch(
                executor, [handler = std::move(handler), result = std::move(result)]() mutable {
                    std::move(handler)(std::move(result));
                });
            work.reset();
        });
    }
};

} // namespace detail

// `fn` runs on `pool`; the caller resumes on its own executor. `fn` must not throw
// (its errors are part of R).
template <typename R>
boost::asio::awaitable<R> offload(boost::asio::any_io_executor pool, std::function<R()> fn) {
    co_return co_await boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(R)>(
        detail::OffloadInitiation<R>{}, boost::asio::use_awaitable, std::move(pool), std::move(fn));
}

} // namespace spoold::drain::connectors
