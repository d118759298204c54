// One accepted SMTP connection from start to end: the PROXY header of a trusted proxy, the
// per-client count, the session's settings, then the loop that carries out the sans-IO
// session's actions over the socket (and TLS). Accepting and admission are server.cpp's.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "smtp/listener.hpp"
#include "smtp/server_state.hpp"

namespace spoold::smtp {

// Who is at the other end of a connection: the peer, or the client a proxy speaks for.
struct Peer {
    std::string client; // address text, as logs, limits and the session use it
    std::uint16_t client_port = 0;
    std::string proxy; // the load balancer's address when a PROXY header names the client
    std::string local; // our address as the client addressed it
    std::uint16_t local_port = 0;
};

// Runs on the connection's strand (the socket's executor) until the session closes, the
// client goes, or a deadline passes; `conn` has been counted in `shared` (against the
// client too unless peer.proxy is set) and is released when this ends, however it ends.
boost::asio::awaitable<void> run_connection(std::shared_ptr<Server::Shared> shared,
                                            std::shared_ptr<Listener> listener,
                                            boost::asio::ip::tcp::socket socket,
                                            std::shared_ptr<Conn> conn, Peer peer);

} // namespace spoold::smtp
