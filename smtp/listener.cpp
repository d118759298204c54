#include "smtp/listener.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace spoold::smtp {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

bool Listener::trusts(const asio::ip::address& peer) const {
    if (trusted_proxies.empty()) {
        return false;
    }
    const auto ip = policy::parse_ip(peer.to_string());
    return ip && std::any_of(trusted_proxies.begin(), trusted_proxies.end(),
                             [&](const policy::Cidr& c) { return c.contains(*ip); });
}

Result<std::shared_ptr<Listener>> open_listener(const asio::any_io_executor& ex,
                                                const policy::ListenerConfig& lc) {
    auto listener = std::make_shared<Listener>(ex);
    if (!lc.tls_certificate.empty() && !lc.tls_key.empty()) {
        auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
        ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                         asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                         asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
        boost::system::error_code ec;
        ctx->use_certificate_chain_file(lc.tls_certificate, ec);
        if (!ec) {
            ctx->use_private_key_file(lc.tls_key, asio::ssl::context::pem, ec);
        }
        if (ec) {
            return fail(ErrorKind::kConfig,
                        fmt::format("listener {}:{}: TLS certificate/key {} / {}: {}", lc.address,
                                    lc.port, lc.tls_certificate, lc.tls_key, ec.message()));
        }
        listener->tls = std::move(ctx);
    }
    if (lc.proxy_protocol) {
        for (const auto& net : lc.trusted_proxies) {
            auto cidr = policy::parse_cidr(net);
            if (!cidr) {
                return fail(ErrorKind::kConfig,
                            fmt::format("listener {}:{}: trusted_proxies: {}", lc.address, lc.port,
                                        cidr.error().message));
            }
            listener->trusted_proxies.push_back(*cidr);
        }
    }
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(lc.address, ec);
    if (ec) {
        return fail(ErrorKind::kConfig,
                    fmt::format("listener address {}: {}", lc.address, ec.message()));
    }
    const tcp::endpoint endpoint(address, lc.port);
    auto& acc = listener->acceptor;
    acc.open(endpoint.protocol(), ec);
    if (!ec) {
        acc.set_option(tcp::acceptor::reuse_address(true), ec);
    }
    if (!ec) {
        acc.bind(endpoint, ec);
    }
    if (!ec) {
        acc.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
        return fail(ErrorKind::kIo,
                    fmt::format("listen on {}:{}: {}", lc.address, lc.port, ec.message()));
    }
    return listener;
}

} // namespace spoold::smtp
