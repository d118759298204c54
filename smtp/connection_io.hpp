// The socket work around an SMTP session that is not the session's: reading a trusted
// proxy's PROXY header, refusing a connection with one line, and closing so that the last
// reply arrives. Each has its own deadline; none knows the SMTP protocol.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <optional>
#include <string>

#include "smtp/proxy_protocol.hpp"

namespace spoold::smtp {

// Reads a trusted proxy's PROXY header (`proxy` is its address, for the log; pointers, as
// every argument here: g++ 12 destroys a temporary in a co_await expression twice). Bytes read
// after the header (a client that spoke first) are left in `early`. nullopt when the
// header is missing, broken or late (logged): the caller then closes the connection
// without a word, since the peer is a load balancer, not a mail client.
boost::asio::awaitable<std::optional<ProxyHeader>>
read_proxy_header(boost::asio::ip::tcp::socket* socket, boost::asio::steady_timer* timer,
                  const std::string* proxy, std::string* early);

// Ends a connection whose client is still there so that our last reply reaches it: the
// TLS close_notify first (when `tls` is not null), then our FIN, then what the client
// still sends is read and dropped until its FIN, a deadline or a byte bound. The socket
// stays open for the caller to close.
boost::asio::awaitable<void>
close_gracefully(boost::asio::ip::tcp::socket* socket,
                 boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>* tls,
                 boost::asio::steady_timer* timer);

// Writes `wire` (a refusal) with a deadline and closes the socket.
boost::asio::awaitable<void> reject_connection(boost::asio::ip::tcp::socket socket,
                                               std::string wire);

// Deadline for writing a refusal to a connection we do not serve.
inline constexpr std::chrono::milliseconds kRejectWriteTimeout{5000};

} // namespace spoold::smtp
