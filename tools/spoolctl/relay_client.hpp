// spoolctl xfer's SMTP client: one blocking connection to a peer spoold that sends one
// message at a time and says whether the peer answered 250 for it. Replies are parsed by
// common/reply_parser and bodies dot-stuffed by common/dotstuff; no pooling, no retries,
// no TLS (a peer is a node of our own fleet on a trusted network).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/reply.hpp"
#include "common/reply_parser.hpp"
#include "common/result.hpp"

namespace spoold::spoolctl {

struct RelayTarget {
    std::string host;
    std::uint16_t port = 25;
    std::string helo = "localhost";
    std::chrono::milliseconds timeout{60'000}; // each connect, command and the body
};

// "HOST:PORT" or "[IPv6]:PORT"; errors: kInvalid.
Result<RelayTarget> parse_relay_target(std::string_view text);

struct RelayRecipient {
    std::string address;
    std::string params; // " NOTIFY=... ORCPT=..." or empty
};

struct RelayMessage {
    std::string mail_from;   // empty = null sender
    std::string mail_params; // " BODY=8BITMIME ..." or empty
    std::vector<RelayRecipient> recipients;
    std::string_view body; // as stored (CRLF), not yet dot-stuffed
};

class RelayClient {
public:
    // Connects, reads the greeting and says EHLO. Errors: kUnavailable (with the reply or
    // the socket error), kTimeout.
    static Result<std::unique_ptr<RelayClient>> open(const RelayTarget& target);

    // Sends one message. Success only when the peer said 250 after the final dot, and it
    // accepted every recipient (a partial acceptance is refused with RSET: the message
    // stays whole here). Errors: kUnavailable carrying the peer's reply; after a transport
    // failure usable() is false.
    Status send(const RelayMessage& message);
    // QUIT, best effort.
    void quit();
    bool usable() const { return socket_.is_open(); }

    explicit RelayClient(RelayTarget target);

private:
    Status connect();
    Result<Reply> command(std::string line); // writes `line` (CRLF added), reads one reply
    Result<Reply> read_reply();
    Status write(std::string_view data);
    // Runs the io_context until the pending operation ends or the timeout passes (then the
    // socket is closed and the operation fails): asio's blocking-with-timeout idiom.
    boost::system::error_code run(boost::system::error_code& ec);
    Error io_error(std::string_view during, const boost::system::error_code& ec);
    Error refused(std::string_view during, const Reply& reply);

    RelayTarget target_;
    boost::asio::io_context io_;
    boost::asio::ip::tcp::socket socket_;
    ReplyParser parser_;
    std::array<char, 16 * 1024> buffer_{};
};

} // namespace spoold::spoolctl
