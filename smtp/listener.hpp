// One configured SMTP listener, bound: its acceptor, its TLS context for STARTTLS and the
// proxies it trusts for the PROXY protocol. Opening only: accepting is smtp/server.cpp's.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <vector>

#include "common/result.hpp"
#include "policy/cidr.hpp"
#include "policy/config.hpp"

namespace spoold::smtp {

struct Listener {
    explicit Listener(const boost::asio::any_io_executor& ex) : acceptor(ex) {}
    boost::asio::ip::tcp::acceptor acceptor;
    std::unique_ptr<boost::asio::ssl::context> tls; // null: STARTTLS not offered
    // The PROXY protocol is on when this is not empty: every connection must come from
    // one of these networks and start with a PROXY header.
    std::vector<policy::Cidr> trusted_proxies;

    bool proxy_protocol() const { return !trusted_proxies.empty(); }
    bool trusts(const boost::asio::ip::address& peer) const;
};

// Loads the certificate and key (when configured), reads trusted_proxies, binds and
// listens (port 0 picks a free port). kConfig when a certificate, key, network or address
// is unusable; kIo when the address cannot be bound. The acceptor runs on `ex`.
Result<std::shared_ptr<Listener>> open_listener(const boost::asio::any_io_executor& ex,
                                                const policy::ListenerConfig& lc);

} // namespace spoold::smtp
