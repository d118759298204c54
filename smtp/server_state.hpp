// What the server shares with its connection coroutines, which may outlive it: the settings
// new sessions start from, the session counts behind the limits, the open connections that
// stop() wakes. State and its locking only; the decisions are in admission.hpp.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "policy/config.hpp"
#include "smtp/filter.hpp"
#include "smtp/intake.hpp"
#include "smtp/listener.hpp"
#include "smtp/server.hpp"

namespace spoold::smtp {

// Per connection, shared between its coroutine and Server::stop().
struct Conn {
    explicit Conn(const boost::asio::any_io_executor& ex) : executor(ex), read_timer(ex) {}
    boost::asio::any_io_executor executor; // the connection's strand
    boost::asio::steady_timer read_timer;  // read deadline; stop() cancels it to wake the reader
    bool stop = false;                     // touched on the strand only
};

// What a new session starts from, copied under the lock at its start.
struct SessionDefaults {
    std::string hostname;
    std::string authserv_id;
    policy::LimitsConfig limits;
};

struct Server::Shared {
    Shared(boost::asio::io_context& io_context, Intake& in, Filters* f);

    boost::asio::io_context& io;
    Intake& intake;
    Filters* filters; // null: none configured
    // Acceptors, stop_timer and stop_done live on this strand.
    boost::asio::any_io_executor control;
    boost::asio::steady_timer stop_timer;
    std::function<void()> stop_done;

    mutable std::mutex mutex; // guards everything below
    std::string hostname;
    std::string authserv_id;
    policy::LimitsConfig limits;
    std::vector<policy::ListenerConfig> listener_configs;
    std::vector<std::shared_ptr<Listener>> listeners;
    std::vector<boost::asio::ip::tcp::endpoint> endpoints;
    std::size_t total = 0;
    std::unordered_map<std::string, std::uint32_t> per_client;
    std::set<std::shared_ptr<Conn>> conns;
    bool stopping = false;

    void configure(const policy::Config& config);
    SessionDefaults session_defaults() const;
    // Runs on `control`.
    void fire_done();
};

// Releases a connection's slot however its coroutine ends (return, exception, or the
// frame being destroyed with the io_context).
class SlotGuard {
public:
    // `client` is empty while the connection counts against the total only (a proxied
    // connection before its header named the client: see count_client).
    SlotGuard(std::shared_ptr<Server::Shared> shared, std::shared_ptr<Conn> conn,
              std::string client);
    SlotGuard(const SlotGuard&) = delete;
    SlotGuard& operator=(const SlotGuard&) = delete;
    ~SlotGuard();

    // Counts the connection against `client`'s limit; false (and not counted) when the
    // client already has max_sessions_per_client connections.
    bool count_client(const std::string& client);

private:
    std::shared_ptr<Server::Shared> shared_;
    std::shared_ptr<Conn> conn_;
    std::string client_;
};

} // namespace spoold::smtp
