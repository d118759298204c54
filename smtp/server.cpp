#include "smtp/server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>

#include "common/escaped.hpp"
#include "common/log.hpp"
#include "smtp/admission.hpp"
#include "smtp/connection.hpp"
#include "smtp/connection_io.hpp"
#include "smtp/listener.hpp"
#include "smtp/server_state.hpp"

// The listeners' accept loops (one coroutine each, on the control strand), admission, and
// the server's start, reconfigure and stop. A connection's own coroutine is connection.cpp's.

namespace spoold::smtp {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Millis = std::chrono::milliseconds;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr Millis kAcceptBackoff{100}; // after EMFILE and friends: do not spin

void log_escaped(const std::exception_ptr& e) { spoold::log_escaped("event=coroutine_failed", e); }

using Shared = Server::Shared;

asio::awaitable<void> accept_loop(std::shared_ptr<Shared> shared,
                                  std::shared_ptr<Listener> listener) {
    asio::steady_timer backoff(shared->control);
    for (;;) {
        auto accepted = co_await listener->acceptor.async_accept(
            asio::any_io_executor(asio::make_strand(shared->io)), kUseTuple);
        auto& ec = std::get<0>(accepted);
        if (ec == asio::error::operation_aborted || !listener->acceptor.is_open()) {
            co_return;
        }
        if (ec) {
            log::warn("event=accept_failed error={}", log::quote(ec.message()));
            backoff.expires_after(kAcceptBackoff);
            co_await backoff.async_wait(kUseTuple);
            continue;
        }
        tcp::socket socket = std::move(std::get<1>(accepted));
        // A pipelining client's replies may go out in several writes (each after a
        // filter's or the spool's verdict); Nagle would hold each but the first for the
        // client's delayed ACK, 40 ms a reply.
        boost::system::error_code nodelay_ec;
        socket.set_option(tcp::no_delay(true), nodelay_ec);
        boost::system::error_code peer_ec;
        const auto remote = socket.remote_endpoint(peer_ec);
        const auto local = socket.local_endpoint(peer_ec);
        if (peer_ec) {
            continue; // gone already
        }
        Peer peer{remote.address().to_string(), remote.port(), "", local.address().to_string(),
                  local.port()};
        // A trusted proxy's connection counts against its client's limit once the PROXY
        // header has named the client.
        if (listener->trusts(remote.address())) {
            peer.proxy = peer.client;
        }
        const std::string& client = peer.client;
        std::optional<Refusal> refusal;
        std::shared_ptr<Conn> conn;
        {
            const std::lock_guard lock(shared->mutex);
            const auto it = shared->per_client.find(client);
            const AdmissionInput in{
                .proxy_listener = listener->proxy_protocol(),
                .trusted_proxy = !peer.proxy.empty(),
                .stopping = shared->stopping,
                .total = shared->total,
                .from_client = it == shared->per_client.end() ? 0 : it->second,
            };
            refusal = admit_connection(in, shared->limits, shared->hostname);
            if (!refusal) {
                ++shared->total;
                if (peer.proxy.empty()) {
                    ++shared->per_client[client];
                }
                conn = std::make_shared<Conn>(socket.get_executor());
                shared->conns.insert(conn);
            }
        }
        if (refusal) {
            log::info("event=reject client={} reason={} reply={}", client, refusal->reason,
                      log::quote(refusal->line()));
            const auto ex = socket.get_executor();
            asio::co_spawn(ex, reject_connection(std::move(socket), std::move(refusal->wire)),
                           log_escaped);
            continue;
        }
        const auto ex = socket.get_executor();
        asio::co_spawn(ex,
                       run_connection(shared, listener, std::move(socket), conn, std::move(peer)),
                       log_escaped);
    }
}

} // namespace

Server::Server(asio::io_context& io, const policy::Config& config, Intake& intake, Filters* filters)
    : io_(io), shared_(std::make_shared<Shared>(io, intake, filters)) {
    shared_->configure(config);
    shared_->listener_configs = config.listeners;
}

Server::~Server() {
    // Connection coroutines keep `shared_` alive; only the acceptors must stop here.
    for (const auto& l : shared_->listeners) {
        asio::post(shared_->control, [l] {
            boost::system::error_code ec;
            l->acceptor.close(ec);
        });
    }
}

Result<std::vector<tcp::endpoint>> Server::start() {
    std::vector<std::shared_ptr<Listener>> listeners;
    std::vector<tcp::endpoint> bound;
    for (const auto& lc : shared_->listener_configs) {
        auto listener = open_listener(shared_->control, lc);
        if (!listener) {
            return tl::unexpected(std::move(listener.error()));
        }
        boost::system::error_code ec;
        bound.push_back((*listener)->acceptor.local_endpoint(ec));
        listeners.push_back(std::move(*listener));
    }
    {
        const std::lock_guard lock(shared_->mutex);
        shared_->listeners = listeners;
        shared_->endpoints = bound;
    }
    for (auto& l : listeners) {
        asio::co_spawn(shared_->control, accept_loop(shared_, l), log_escaped);
    }
    return bound;
}

const std::vector<tcp::endpoint>& Server::endpoints() const { return shared_->endpoints; }

void Server::reconfigure(const policy::Config& config) { shared_->configure(config); }

void Server::stop(std::chrono::milliseconds grace, std::function<void()> done) {
    std::vector<std::shared_ptr<Conn>> conns;
    {
        const std::lock_guard lock(shared_->mutex);
        shared_->stopping = true;
        conns.assign(shared_->conns.begin(), shared_->conns.end());
    }
    asio::post(shared_->control, [s = shared_, grace, d = std::move(done)]() mutable {
        for (const auto& l : s->listeners) {
            boost::system::error_code ec;
            l->acceptor.close(ec);
        }
        s->stop_done = std::move(d);
        bool idle = false;
        {
            const std::lock_guard lock(s->mutex);
            idle = s->total == 0;
        }
        if (idle) {
            s->fire_done();
            return;
        }
        s->stop_timer.expires_after(grace);
        s->stop_timer.async_wait([s](const boost::system::error_code& ec) {
            if (!ec) {
                std::size_t left = 0;
                {
                    const std::lock_guard lock(s->mutex);
                    left = s->total;
                }
                log::warn("event=stop_grace_expired sessions={}", left);
                s->fire_done();
            }
        });
    });
    for (const auto& c : conns) {
        asio::post(c->executor, [c] {
            c->stop = true;
            c->read_timer.cancel();
        });
    }
}

std::size_t Server::session_count() const {
    const std::lock_guard lock(shared_->mutex);
    return shared_->total;
}

} // namespace spoold::smtp
