// Callback APIs as awaitables: an operation that reports once, through a callback, on any
// thread (the spool's writer, an intake, a filter chain, a thread pool) resumes the
// awaiting coroutine on the coroutine's own executor. Not for callbacks called twice.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

namespace spoold::io {

// Calls `start(done)`; `done(value)`, called once on any thread, resumes the awaiting
// coroutine with `value` on its executor. The executor is kept from running out of work
// until then, so an io_context does not return while an answer is pending.
template <typename T, typename Start> boost::asio::awaitable<T> from_callback(Start start) {
    return boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(T)>(
        [](auto handler, Start st) {
            using Handler = decltype(handler);
            auto ex = boost::asio::get_associated_executor(handler);
            auto slot = std::make_shared<std::optional<Handler>>(std::move(handler));
            auto work = boost::asio::make_work_guard(ex);
            st(std::function<void(T)>([slot, ex, work](T value) {
                boost::asio::post(ex, [slot, value = std::move(value)]() mutable {
                    Handler h = std::move(**slot);
                    slot->reset();
                    std::move(h)(std::move(value));
                });
            }));
        },
        boost::asio::use_awaitable, std::move(start));
}

// Runs the blocking `fn` on `pool` (file I/O that must not stall the io_context) and
// resumes the caller on its own executor with the result. `fn` must not throw (its
// errors are part of R) and must not touch the caller's Asio objects.
template <typename R>
boost::asio::awaitable<R> offload(boost::asio::any_io_executor pool, std::function<R()> fn) {
    return from_callback<R>([pool, fn = std::move(fn)](std::function<void(R)> done) mutable {
        boost::asio::post(pool,
                          [fn = std::move(fn), done = std::move(done)]() mutable { done(fn()); });
    });
}

} // namespace spoold::io
