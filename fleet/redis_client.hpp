// A Redis client on spoold's Asio loop: one connection (TCP or Unix socket), commands
// pipelined in order, a deadline on each, scripts by EVALSHA (EVAL on NOSCRIPT). hiredis
// encodes and parses; no retries, no pooling: the caller decides what an error means.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "fleet/redis_reply.hpp"

namespace spoold::fleet {

struct RedisEndpoint {
    std::string socket; // a Unix socket path; when empty, host and port
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    std::string describe() const;
};

// A Lua script and its SHA-1, the name EVALSHA calls it by.
struct RedisScript {
    explicit RedisScript(std::string source);
    std::string source;
    std::string sha1; // lower-case hex
};

class RedisClient {
public:
    // Every call must come from `executor`'s thread. `timeout` bounds each request from
    // the call to its reply, connecting included.
    RedisClient(boost::asio::any_io_executor executor, RedisEndpoint endpoint,
                std::chrono::milliseconds timeout);
    ~RedisClient();
    RedisClient(const RedisClient&) = delete;
    RedisClient& operator=(const RedisClient&) = delete;

    // One command and its reply. A Redis error reply ("-ERR ...") is a reply, not an
    // Error. Errors: kUnavailable (cannot connect, or the connection was lost), kTimeout
    // (no reply by the deadline: the connection is closed, since the replies still on
    // their way could no longer be matched to their requests), kProtocol (garbage).
    // After a failed connect, calls fail at once with kUnavailable for a short backoff.
    boost::asio::awaitable<Result<RedisReply>> command(std::vector<std::string> args);
    // EVALSHA; on NOSCRIPT (Redis restarted or its script cache was flushed) EVAL, which
    // also caches it again.
    boost::asio::awaitable<Result<RedisReply>> eval(std::shared_ptr<const RedisScript> script,
                                                    std::vector<std::string> keys,
                                                    std::vector<std::string> args);
    // Closes the connection; pending requests fail with kUnavailable.
    void close();
    bool connected() const;
    // Requests written to Redis since construction: the round trips the caller paid.
    std::uint64_t requests_sent() const;

private:
    struct Impl;
    std::shared_ptr<Impl> impl_;
};

} // namespace spoold::fleet
