// One client connection to an LMTP or SMTP mailstore: the Asio driver around
// ClientSession (TCP, Unix socket, STARTTLS), with a deadline on every step. It
// delivers one message at a time; pooling and retrying are WireMailstore's.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <tl/expected.hpp>
#include <variant>

#include "common/reply.hpp"
#include "drain/connectors/client_session.hpp"
#include "common/reply_parser.hpp"
#include "drain/mailstore.hpp"

namespace spoold::drain::connectors {

// Body bytes read from the spool per read_body call: bounded memory per delivery
// whatever the message size (50 MiB messages never sit in memory whole).
inline constexpr std::size_t kBodyPieceBytes = 64 * 1024;

struct WireOptions {
    Dialect dialect = Dialect::kLmtp;
    std::string host = "127.0.0.1";
    std::uint16_t port = 24;
    std::string unix_socket; // when set, host/port are ignored
    std::string helo_name = "localhost";
    bool starttls = false; // SMTP only; needs `tls`
    std::shared_ptr<boost::asio::ssl::context> tls;
    bool tls_verify = false; // also check the certificate's name against `host`
    std::chrono::milliseconds connect_timeout{10'000};
    std::chrono::milliseconds command_timeout{60'000};
    std::chrono::milliseconds data_timeout{300'000};
    std::size_t body_piece_bytes = kBodyPieceBytes;
};

// Why a step failed, as the reply every unanswered recipient takes (always
// mailstore trouble), and whether it was a deadline.
struct WireFailure {
    Reply reply;
    bool timed_out = false;
    bool local = false; // our own spool failed (reading the body): not the mailstore's trouble
};

class Connection {
public:
    // Connects (connect_timeout), reads the greeting and says LHLO/EHLO, with STARTTLS
    // when asked and offered (command_timeout each). Fails with a 451 4.4.x reply.
    static boost::asio::awaitable<tl::expected<std::unique_ptr<Connection>, WireFailure>>
    open(boost::asio::any_io_executor executor, std::shared_ptr<const WireOptions> options);

    struct Outcome {
        DeliveryResult result;
        // The connection died before anything of this message reached the server
        // (the RSET of a reused connection failed): safe to retry on a fresh one.
        bool retry_on_fresh = false;
        // Set when the conversation broke off (timeout, close, garbage or an overlong
        // reply): the reason, for the log. A reply the server gave is not a break.
        std::optional<Reply> broke_off;
    };
    // One message; afterwards the connection is reusable when usable().
    boost::asio::awaitable<Outcome> deliver(DeliveryRequest request);
    // QUIT and its reply within command_timeout, then close. Never fails.
    boost::asio::awaitable<void> quit();

    bool usable() const { return session_.usable() && is_open(); }
    const ClientSession& session() const { return session_; }
    std::chrono::steady_clock::time_point idle_since() const { return idle_since_; }
    void mark_idle() { idle_since_ = std::chrono::steady_clock::now(); }

    Connection(const boost::asio::any_io_executor& executor,
               std::shared_ptr<const WireOptions> options);

private:
    using TcpSocket = boost::asio::ip::tcp::socket;
    using UnixSocket = boost::asio::local::stream_protocol::socket;
    using TlsStream = boost::asio::ssl::stream<TcpSocket>;

    struct Io {
        boost::system::error_code ec;
        std::size_t bytes = 0;
        bool timed_out = false;
    };

    boost::asio::awaitable<tl::expected<void, WireFailure>> connect();
    boost::asio::awaitable<tl::expected<void, WireFailure>> start_tls();
    // Reads without racing a timer per read: the watchdog closes the socket at `deadline`,
    // which ends the read; it is then reported as timed out.
    boost::asio::awaitable<Io> read_some(std::chrono::steady_clock::time_point deadline);
    // Arms the watchdog for `deadline` (nothing to do when it is armed for it already).
    void watch(std::chrono::steady_clock::time_point deadline);
    // Disarms it: the connection goes back to the pool, where no deadline runs.
    void unwatch();
    boost::asio::awaitable<Io> write_all(std::string data,
                                         std::chrono::steady_clock::time_point deadline);
    boost::asio::awaitable<tl::expected<Reply, WireFailure>>
    read_reply(std::chrono::milliseconds timeout);
    // Writes take_output() and reads one reply; runs the session forward until it
    // stops asking for replies. Failures go through session_.io_failed().
    struct Step {
        Next next = Next::kClose;
        bool failed_in_rset =
            false; // the transport failed while a reused connection's RSET was out
        bool timed_out = false;
        std::optional<Reply> broke_off;
    };
    boost::asio::awaitable<Step> converse(Next next);
    // Streams the body; a spool read failure is returned (the connection is then
    // closed without the final dot, so the server discards the partial message).
    boost::asio::awaitable<tl::expected<void, WireFailure>> send_body(BodyReader reader);
    std::chrono::milliseconds reply_timeout() const;
    WireFailure io_failure(const Io& io, std::string_view during) const;
    bool is_open() const;
    void close();

    boost::asio::any_io_executor executor_;
    std::shared_ptr<const WireOptions> options_;
    std::variant<std::monostate, TcpSocket, UnixSocket, std::unique_ptr<TlsStream>> stream_;
    boost::asio::steady_timer timer_;
    boost::asio::steady_timer watchdog_;
    std::optional<std::chrono::steady_clock::time_point> watch_deadline_; // while armed
    bool watch_fired_ = false;
    // The watchdog's handler holds it weakly: it may run after the connection is gone.
    std::shared_ptr<char> alive_ = std::make_shared<char>();
    ClientSession session_;
    ReplyParser parser_;
    std::array<char, 16 * 1024> read_buffer_{};
    std::chrono::steady_clock::time_point idle_since_ = std::chrono::steady_clock::now();
};

} // namespace spoold::drain::connectors
