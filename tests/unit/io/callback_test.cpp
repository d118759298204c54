#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <optional>
#include <string>
#include <thread>

#include "io/callback.hpp"

namespace asio = boost::asio;

namespace {

// Runs `op` on a fresh io_context on this thread and gives its result.
template <typename T> T run(asio::io_context& io, asio::awaitable<T> op) {
    std::optional<T> out;
    asio::co_spawn(io, std::move(op), [&out](const std::exception_ptr& e, T r) {
        REQUIRE_FALSE(e);
        out = std::move(r);
    });
    io.run();
    REQUIRE(out);
    return std::move(*out);
}

asio::awaitable<std::thread::id> answered_from_another_thread(std::thread* worker,
                                                              std::string* got) {
    // Named, not written inside the co_await expression (g++ 12 coroutine hygiene).
    auto start = [worker](std::function<void(std::string)> done) {
        *worker = std::thread([done = std::move(done)] { done("250 ok"); });
    };
    *got = co_await spoold::io::from_callback<std::string>(std::move(start));
    co_return std::this_thread::get_id();
}

asio::awaitable<int> offloaded(asio::any_io_executor pool, std::thread::id* ran_on) {
    std::function<int()> fn = [ran_on] {
        *ran_on = std::this_thread::get_id();
        return 42;
    };
    co_return co_await spoold::io::offload<int>(std::move(pool), std::move(fn));
}

} // namespace

TEST_CASE("a callback called on another thread resumes the coroutine on its own executor") {
    asio::io_context io;
    std::thread worker;
    std::string got;
    // io.run() returns only once the coroutine is done: the pending answer keeps the
    // io_context from running out of work while the worker has not called back yet.
    const std::thread::id resumed_on = run(io, answered_from_another_thread(&worker, &got));
    worker.join();
    CHECK(got == "250 ok");
    CHECK(resumed_on == std::this_thread::get_id());
}

TEST_CASE("offload runs the function on the pool and resumes the caller on its executor") {
    asio::io_context io;
    asio::thread_pool pool(1);
    std::thread::id ran_on;
    CHECK(run(io, offloaded(pool.get_executor(), &ran_on)) == 42);
    pool.join();
    CHECK(ran_on != std::this_thread::get_id());
}
