// A real redis-server for the fleet's tests: on a Unix socket in a temp dir of its own (no
// TCP, nothing saved), awaited until it answers PING, stopped (TERM, then KILL) at the end;
// and `run`, which drives a coroutine to completion on an io_context.
#pragma once

#include <doctest/doctest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "fleet/redis_client.hpp"

namespace spoold::test {

class RedisServer {
public:
    RedisServer() {
        char tmpl[] = "/tmp/spoold-redis-XXXXXX";
        REQUIRE(::mkdtemp(tmpl) != nullptr);
        dir_ = tmpl;
        start();
    }
    ~RedisServer() {
        stop();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    std::string socket() const { return dir_ + "/redis.sock"; }
    fleet::RedisEndpoint endpoint() const {
        fleet::RedisEndpoint ep;
        ep.socket = socket();
        return ep;
    }

    void start() {
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            const std::string sock = socket();
            const std::string log = dir_ + "/redis.log";
            ::execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock.c_str(),
                     "--save", "", "--appendonly", "no", "--dir", dir_.c_str(), "--loglevel",
                     "warning", "--logfile", log.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
        // Polls (with a deadline) until the socket accepts and answers PING.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!answers()) {
            int status = 0;
            REQUIRE_MESSAGE(::waitpid(pid_, &status, WNOHANG) == 0, "redis-server exited");
            REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline,
                            "redis-server did not answer within 10 s");
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }

    void stop() {
        if (pid_ <= 0) {
            return;
        }
        ::kill(pid_, SIGTERM);
        int status = 0;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (::waitpid(pid_, &status, WNOHANG) == 0) {
            if (std::chrono::steady_clock::now() > deadline) {
                ::kill(pid_, SIGKILL);
                ::waitpid(pid_, &status, 0);
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        pid_ = -1;
        std::error_code ec;
        std::filesystem::remove(socket(), ec);
    }

private:
    bool answers() const {
        const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0) {
            return false;
        }
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        const std::string path = socket();
        path.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
        bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
        if (ok) {
            const char ping[] = "PING\r\n";
            char reply[16] = {};
            ok = ::write(fd, ping, sizeof(ping) - 1) == sizeof(ping) - 1 &&
                 ::read(fd, reply, sizeof(reply)) >= 5 && std::string(reply, 5) == "+PONG";
        }
        ::close(fd);
        return ok;
    }

    std::string dir_;
    pid_t pid_ = -1;
};

// Runs `task` on `io` until it finishes and returns its result.
template <typename T> T run(boost::asio::io_context& io, boost::asio::awaitable<T> task) {
    auto future = boost::asio::co_spawn(io, std::move(task), boost::asio::use_future);
    io.restart();
    while (future.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
        REQUIRE(io.run_one_for(std::chrono::seconds(30)) > 0);
    }
    return future.get();
}

} // namespace spoold::test
