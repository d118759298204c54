#include "smtp/connection_io.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <vector>

#include "common/log.hpp"
#include "io/timed.hpp"

namespace spoold::smtp {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using Millis = std::chrono::milliseconds;
using spoold::io::IoResult;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
// Closing: how long the TLS close_notify exchange and the wait for the client's FIN may take.
constexpr Millis kCloseTimeout{5000};
constexpr std::size_t kLingerMaxBytes = 256 * 1024; // read and dropped while closing, at most
constexpr std::size_t kLingerReadSize = 4096;
// A trusted proxy's header must arrive within this (Postfix's smtpd_upstream_proxy_timeout).
constexpr Millis kProxyTimeout{5000};

} // namespace

asio::awaitable<std::optional<ProxyHeader>> read_proxy_header(tcp::socket* socket,
                                                              asio::steady_timer* timer,
                                                              const std::string* proxy,
                                                              std::string* early) {
    std::string got;
    std::vector<char> buf(kProxyV2MaxBytes);
    const auto until = std::chrono::steady_clock::now() + kProxyTimeout;
    for (;;) {
        ProxyParse p = parse_proxy_header(got);
        if (p.status == ProxyStatus::kDone) {
            early->assign(got, p.consumed);
            co_return std::move(p.header);
        }
        const auto left =
            std::chrono::duration_cast<Millis>(until - std::chrono::steady_clock::now());
        if (p.status == ProxyStatus::kInvalid || left.count() <= 0) {
            log::warn("event=proxy_header_refused proxy={} error={}", *proxy,
                      log::quote(p.status == ProxyStatus::kInvalid ? p.error : "timeout"));
            co_return std::nullopt;
        }
        const IoResult r = co_await spoold::io::read_some_for(
            socket, timer, asio::buffer(buf.data(), kProxyV2MaxBytes - got.size()), left);
        if (r.timed_out || r.ec) {
            log::warn("event=proxy_header_refused proxy={} error={}", *proxy,
                      log::quote(r.timed_out ? "timeout" : r.ec.message()));
            co_return std::nullopt;
        }
        got.append(buf.data(), r.bytes);
    }
}

// The TLS close_notify first (RFC 8446 6.1; without it a client sees a truncation attack,
// not a clean close). Closing a socket with unread input makes the kernel send a reset,
// and a reset can destroy the reply still in flight to the client: hence the linger.
asio::awaitable<void> close_gracefully(tcp::socket* socket, asio::ssl::stream<tcp::socket&>* tls,
                                       asio::steady_timer* timer) {
    if (tls != nullptr) {
        timer->expires_after(kCloseTimeout);
        co_await (tls->async_shutdown(kUseTuple) || timer->async_wait(kUseTuple));
    }
    boost::system::error_code ec;
    socket->shutdown(tcp::socket::shutdown_send, ec);
    std::vector<char> sink(kLingerReadSize);
    std::size_t dropped = 0;
    const auto until = std::chrono::steady_clock::now() + kCloseTimeout;
    while (!ec && dropped < kLingerMaxBytes) {
        const auto left =
            std::chrono::duration_cast<Millis>(until - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            break;
        }
        const IoResult r =
            co_await spoold::io::read_some_for(socket, timer, asio::buffer(sink), left);
        if (r.timed_out || r.ec) {
            break;
        }
        dropped += r.bytes;
    }
}

asio::awaitable<void> reject_connection(tcp::socket socket, std::string wire) {
    asio::steady_timer timer(socket.get_executor());
    co_await spoold::io::write_all_for(&socket, &timer, asio::buffer(wire), kRejectWriteTimeout);
    boost::system::error_code ec;
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.close(ec);
}

} // namespace spoold::smtp
