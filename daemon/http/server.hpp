// The operations HTTP endpoint: /metrics (Prometheus text), /status (JSON from the daemon)
// and / (the self-contained status page). GET and HEAD only, loopback by default; no TLS,
// no authentication: bind it where only operators and Prometheus can reach it.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/result.hpp"

namespace spoold::http {

// Returns the /status document (see status.hpp: usually status_json(snapshot)). Called on
// the server's executor once per /status request, so it must be cheap and safe to call
// from that thread; an exception it throws becomes a 500 and a log line.
using StatusSource = std::function<std::string()>;

inline constexpr std::size_t kMaxRequestHeaderBytes = 8 * 1024;
inline constexpr std::size_t kMaxConnections = 64;

namespace detail {
struct ServerState; // shared with the coroutines, which may outlive the HttpServer briefly
}

class HttpServer {
public:
    HttpServer(const boost::asio::any_io_executor& executor, std::string address,
               std::uint16_t port, StatusSource status);
    ~HttpServer(); // stop()
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    // Binds, listens and starts accepting; returns the bound port (useful with port 0).
    // kInvalid for a bad address, kIo when the bind or listen fails. Call once.
    Result<std::uint16_t> start();
    // Stops accepting and closes open connections; returns at once, the coroutines end on
    // the executor soon after. Safe to call more than once and from any thread.
    void stop();

private:
    std::shared_ptr<detail::ServerState> state_;
};

} // namespace spoold::http
