#include "drain/connectors/connection.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <openssl/ssl.h>
#include <tuple>

#include "common/dotstuff.hpp"
#include "common/log.hpp"
#include "io/timed.hpp"

namespace spoold::drain::connectors {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

// Connecting, the TLS handshake and a write that must wait race their operation against the
// connection's timer with the awaitable || operator: the loser is cancelled through its
// cancellation slot, so a stalled server cannot hold the coroutine past the deadline. Reads,
// several a message, are not raced (two coroutines and a parallel group each): a watchdog
// armed once per reply closes the socket at the reply's deadline instead. as_tuple keeps
// errors as values (no exceptions on the hot path; "connection refused" is expected).
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// Writes what the socket takes now without waiting (a command group or a body piece
// usually fits its send buffer whole): no timer raced, nothing posted. Returns the bytes
// written; `ec` is would_block when it took none. Non-blocking mode is set once per
// connection: each call of non_blocking(true) is an ioctl, two a message.
template <typename Socket>
std::size_t write_now(Socket& socket, std::string_view data, boost::system::error_code& ec) {
    if (!socket.non_blocking()) {
        socket.non_blocking(true, ec);
        if (ec) {
            return 0;
        }
    }
    return socket.write_some(asio::buffer(data.data(), data.size()), ec);
}

bool is_ip_address(const std::string& host) {
    boost::system::error_code ec;
    (void)asio::ip::make_address(host, ec);
    return !ec;
}

} // namespace

Connection::Connection(const asio::any_io_executor& executor,
                       std::shared_ptr<const WireOptions> options)
    : executor_(executor), options_(std::move(options)), timer_(executor), watchdog_(executor),
      session_(options_->dialect, options_->helo_name,
               options_->starttls && options_->tls != nullptr) {}

bool Connection::is_open() const {
    if (const auto* tcp = std::get_if<TcpSocket>(&stream_)) {
        return tcp->is_open();
    }
    if (const auto* local = std::get_if<UnixSocket>(&stream_)) {
        return local->is_open();
    }
    if (const auto* tls = std::get_if<std::unique_ptr<TlsStream>>(&stream_)) {
        return *tls && (*tls)->next_layer().is_open();
    }
    return false;
}

void Connection::close() {
    boost::system::error_code ignored;
    if (auto* tcp = std::get_if<TcpSocket>(&stream_)) {
        tcp->close(ignored);
    } else if (auto* local = std::get_if<UnixSocket>(&stream_)) {
        local->close(ignored);
    } else if (auto* tls = std::get_if<std::unique_ptr<TlsStream>>(&stream_)) {
        (*tls)->next_layer().close(ignored);
    }
    timer_.cancel();
    unwatch();
}

WireFailure Connection::io_failure(const Io& io, std::string_view during) const {
    if (io.timed_out) {
        return {make_reply(451, "4.4.2", fmt::format("mailstore timed out {}", during)), true};
    }
    if (io.ec == asio::error::eof || io.ec == asio::error::connection_reset ||
        io.ec == asio::error::broken_pipe) {
        return {make_reply(451, "4.4.2", fmt::format("mailstore closed the connection {}", during)),
                false};
    }
    return {make_reply(
                451, "4.4.2",
                fmt::format("connection to the mailstore failed {}: {}", during, io.ec.message())),
            false};
}

void Connection::watch(Clock::time_point deadline) {
    if (watch_deadline_ == deadline) {
        return;
    }
    watch_deadline_ = deadline;
    watchdog_.expires_at(deadline); // a wait armed before ends with operation_aborted
    watchdog_.async_wait(
        [this, alive = std::weak_ptr<char>(alive_)](const boost::system::error_code& ec) {
            // An expiry already queued when the watchdog was moved or disarmed is not this
            // deadline's: only a deadline still armed and passed closes the connection.
            if (ec || !alive.lock() || !watch_deadline_ || Clock::now() < *watch_deadline_) {
                return;
            }
            watch_fired_ = true;
            close();
        });
}

void Connection::unwatch() {
    if (watch_deadline_) {
        watch_deadline_.reset();
        watchdog_.cancel();
    }
}

asio::awaitable<Connection::Io> Connection::read_some(Clock::time_point deadline) {
    watch(deadline);
    const auto buffer = asio::buffer(read_buffer_);
    std::tuple<boost::system::error_code, std::size_t> r;
    if (auto* tcp = std::get_if<TcpSocket>(&stream_)) {
        r = co_await tcp->async_read_some(buffer, kTuple);
    } else if (auto* local = std::get_if<UnixSocket>(&stream_)) {
        r = co_await local->async_read_some(buffer, kTuple);
    } else if (auto* tls = std::get_if<std::unique_ptr<TlsStream>>(&stream_)) {
        r = co_await (*tls)->async_read_some(buffer, kTuple);
    } else {
        co_return Io{watch_fired_ ? asio::error::timed_out : asio::error::not_connected, 0,
                     watch_fired_};
    }
    if (watch_fired_) {
        co_return Io{asio::error::timed_out, 0, true};
    }
    co_return Io{std::get<0>(r), std::get<1>(r), false};
}

asio::awaitable<Connection::Io> Connection::write_all(std::string data,
                                                      Clock::time_point deadline) {
    const std::size_t size = data.size();
    boost::system::error_code now_ec = asio::error::would_block;
    std::size_t now = 0;
    if (auto* tcp = std::get_if<TcpSocket>(&stream_)) {
        now = write_now(*tcp, data, now_ec);
    } else if (auto* local = std::get_if<UnixSocket>(&stream_)) {
        now = write_now(*local, data, now_ec);
    }
    if (now_ec && now_ec != asio::error::would_block) {
        co_return Io{now_ec, 0, false};
    }
    if (now == size) {
        co_return Io{{}, size, false};
    }
    data.erase(0, now); // the rest waits for room, against the deadline
    timer_.expires_at(deadline);
    // `data` lives in this coroutine's frame until the write is done.
    const auto buffer = asio::buffer(data);
    io::IoResult r;
    if (auto* tcp = std::get_if<TcpSocket>(&stream_)) {
        r = co_await io::write_all(tcp, &timer_, buffer);
    } else if (auto* local = std::get_if<UnixSocket>(&stream_)) {
        r = co_await io::write_all(local, &timer_, buffer);
    } else if (auto* tls = std::get_if<std::unique_ptr<TlsStream>>(&stream_)) {
        r = co_await io::write_all(tls->get(), &timer_, buffer);
    } else {
        co_return Io{asio::error::not_connected, 0, false};
    }
    if (r.timed_out) {
        close();
        co_return Io{asio::error::timed_out, 0, true};
    }
    co_return Io{r.ec, r.bytes, false};
}

asio::awaitable<tl::expected<Reply, WireFailure>>
Connection::read_reply(std::chrono::milliseconds timeout) {
    const auto deadline =
        Clock::now() + timeout; // for the whole reply: a server dripping bytes cannot extend it
    while (true) {
        auto parsed = parser_.next();
        if (!parsed) {
            close();
            co_return tl::unexpected(WireFailure{
                make_reply(451, "4.4.0",
                           fmt::format("mailstore protocol error: {}", parsed.error().message)),
                false});
        }
        if (*parsed) {
            co_return std::move(**parsed);
        }
        const Io io = co_await read_some(deadline);
        if (io.timed_out || io.ec) {
            close();
            co_return tl::unexpected(io_failure(io, "waiting for a reply"));
        }
        parser_.feed(std::string_view(read_buffer_.data(), io.bytes));
    }
}

asio::awaitable<tl::expected<void, WireFailure>> Connection::connect() {
    using namespace asio::experimental::awaitable_operators;
    const auto& o = *options_;
    timer_.expires_after(o.connect_timeout);
    if (!o.unix_socket.empty()) {
        UnixSocket socket(executor_);
        auto r = co_await (
            socket.async_connect(asio::local::stream_protocol::endpoint(o.unix_socket), kTuple) ||
            timer_.async_wait(kTuple));
        if (r.index() == 1) {
            co_return tl::unexpected(WireFailure{
                make_reply(451, "4.4.1", fmt::format("connect to {} timed out", o.unix_socket)),
                true});
        }
        if (auto [ec] = std::get<0>(r); ec) {
            co_return tl::unexpected(WireFailure{
                make_reply(451, "4.4.1",
                           fmt::format("cannot connect to {}: {}", o.unix_socket, ec.message())),
                false});
        }
        stream_.emplace<UnixSocket>(std::move(socket));
        co_return tl::expected<void, WireFailure>{};
    }
    asio::ip::tcp::resolver resolver(executor_);
    auto resolved = co_await (resolver.async_resolve(o.host, std::to_string(o.port), kTuple) ||
                              timer_.async_wait(kTuple));
    if (resolved.index() == 1) {
        co_return tl::unexpected(WireFailure{
            make_reply(451, "4.4.3", fmt::format("resolving {} timed out", o.host)), true});
    }
    auto [rec, endpoints] = std::get<0>(resolved);
    if (rec) {
        co_return tl::unexpected(WireFailure{
            make_reply(451, "4.4.3", fmt::format("cannot resolve {}: {}", o.host, rec.message())),
            false});
    }
    TcpSocket socket(executor_);
    auto connected =
        co_await (asio::async_connect(socket, endpoints, kTuple) || timer_.async_wait(kTuple));
    if (connected.index() == 1) {
        co_return tl::unexpected(WireFailure{
            make_reply(451, "4.4.1", fmt::format("connect to {}:{} timed out", o.host, o.port)),
            true});
    }
    if (auto [ec, ep] = std::get<0>(connected); ec) {
        co_return tl::unexpected(WireFailure{
            make_reply(451, "4.4.1",
                       fmt::format("cannot connect to {}:{}: {}", o.host, o.port, ec.message())),
            false});
    }
    boost::system::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true),
                      ignored); // pipelined commands: no Nagle stalls
    stream_.emplace<TcpSocket>(std::move(socket));
    co_return tl::expected<void, WireFailure>{};
}

asio::awaitable<tl::expected<void, WireFailure>> Connection::start_tls() {
    using namespace asio::experimental::awaitable_operators;
    auto* tcp = std::get_if<TcpSocket>(&stream_);
    if (tcp == nullptr || !options_->tls) {
        co_return tl::unexpected(
            WireFailure{make_reply(451, "4.7.0", "STARTTLS over a non-TCP connection"), false});
    }
    if (parser_.has_buffered()) {
        // Bytes after "220" and before the handshake would be taken as if they came
        // through TLS (the CVE-2011-0411 class of injection): refuse them.
        close();
        co_return tl::unexpected(WireFailure{
            make_reply(451, "4.4.0", "mailstore sent data after its STARTTLS reply"), false});
    }
    auto tls = std::make_unique<TlsStream>(std::move(*tcp), *options_->tls);
    stream_.emplace<std::unique_ptr<TlsStream>>(std::move(tls));
    auto& stream = *std::get<std::unique_ptr<TlsStream>>(stream_);
    if (!is_ip_address(options_->host)) {
        SSL_set_tlsext_host_name(stream.native_handle(), options_->host.c_str());
    }
    if (options_->tls_verify) {
        stream.set_verify_callback(asio::ssl::host_name_verification(options_->host));
    }
    timer_.expires_after(options_->command_timeout);
    auto r = co_await (stream.async_handshake(asio::ssl::stream_base::client, kTuple) ||
                       timer_.async_wait(kTuple));
    if (r.index() == 1) {
        close();
        co_return tl::unexpected(WireFailure{
            make_reply(451, "4.4.2", "TLS handshake with the mailstore timed out"), true});
    }
    if (auto [ec] = std::get<0>(r); ec) {
        close();
        co_return tl::unexpected(WireFailure{
            make_reply(451, "4.7.5",
                       fmt::format("TLS handshake with the mailstore failed: {}", ec.message())),
            false});
    }
    co_return tl::expected<void, WireFailure>{};
}

std::chrono::milliseconds Connection::reply_timeout() const {
    // RFC 5321 4.5.3.2.6: the reply to the final dot may take long (the store fsyncs).
    return session_.stage() == Stage::kFinal ? options_->data_timeout : options_->command_timeout;
}

asio::awaitable<Connection::Step> Connection::converse(Next next) {
    Step step;
    while (next == Next::kRead) {
        const bool in_rset = session_.stage() == Stage::kRset;
        std::string out = session_.take_output();
        if (!out.empty()) {
            const Io io =
                co_await write_all(std::move(out), Clock::now() + options_->command_timeout);
            if (io.timed_out || io.ec) {
                close();
                step.failed_in_rset = in_rset && !io.timed_out;
                step.timed_out = io.timed_out;
                step.broke_off = io_failure(io, "sending a command").reply;
                next = session_.io_failed(*step.broke_off);
                continue;
            }
        }
        auto reply = co_await read_reply(reply_timeout());
        if (!reply) {
            step.failed_in_rset = in_rset && !reply.error().timed_out;
            step.timed_out = reply.error().timed_out;
            step.broke_off = reply.error().reply;
            next = session_.io_failed(reply.error().reply);
            continue;
        }
        next = session_.on_reply(*reply);
    }
    step.next = next;
    co_return step;
}

asio::awaitable<tl::expected<std::unique_ptr<Connection>, WireFailure>>
Connection::open(asio::any_io_executor executor, std::shared_ptr<const WireOptions> options) {
    auto conn = std::make_unique<Connection>(executor, std::move(options));
    if (auto c = co_await conn->connect(); !c) {
        co_return tl::unexpected(c.error());
    }
    Step step = co_await conn->converse(conn->session_.start());
    if (step.next == Next::kStartTls) {
        if (auto t = co_await conn->start_tls(); !t) {
            co_return tl::unexpected(t.error());
        }
        step = co_await conn->converse(conn->session_.tls_established());
    }
    if (step.next != Next::kReady) {
        conn->close();
        const auto& failure = conn->session_.session_failure();
        Reply reply =
            failure ? *failure : make_reply(451, "4.4.0", "mailstore session setup failed");
        if (!is_trouble(reply) && !reply.transient()) {
            // A 5xx greeting or LHLO refusal still means this mailstore cannot take mail.
            reply = make_reply(451, "4.4.0",
                               fmt::format("mailstore refused the session: {}", reply.summary()));
        }
        co_return tl::unexpected(WireFailure{std::move(reply), step.timed_out});
    }
    conn->unwatch();
    co_return std::move(conn);
}

asio::awaitable<tl::expected<void, WireFailure>> Connection::send_body(BodyReader reader) {
    DotStuffer stuffer;
    std::uint32_t chunk = 0;
    std::string wire;
    while (true) {
        auto piece = reader(chunk, options_->body_piece_bytes);
        if (!piece) {
            close();
            co_return tl::unexpected(
                WireFailure{reply_for_local_error(piece.error()), false, true});
        }
        if (!piece->done && piece->data.empty() && piece->next_chunk == chunk) {
            close(); // a reader that makes no progress would spin here for ever
            co_return tl::unexpected(WireFailure{
                reply_for_local_error(Error{ErrorKind::kInternal, "body reader made no progress"}),
                false, true});
        }
        wire.clear();
        stuffer.feed(piece->data, wire);
        if (piece->done) {
            stuffer.finish(wire);
        }
        const Io io = co_await write_all(std::move(wire), Clock::now() + options_->data_timeout);
        wire = std::string();
        if (io.timed_out || io.ec) {
            close();
            co_return tl::unexpected(io_failure(io, "sending the body"));
        }
        if (piece->done) {
            co_return tl::expected<void, WireFailure>{};
        }
        chunk = piece->next_chunk;
    }
}

asio::awaitable<Connection::Outcome> Connection::deliver(DeliveryRequest request) {
    Outcome outcome;
    BodyReader reader = request.read_body;
    Step step = co_await converse(session_.begin(request));
    if (step.next == Next::kSendBody) {
        // The 354 came with the envelope replies; the body goes after them.
        auto sent = co_await send_body(std::move(reader));
        if (!sent) {
            if (sent.error().local) {
                // Our own spool failed mid-body: the mailstore is not to blame.
                (void)session_.io_failed(sent.error().reply);
                outcome.result = session_.take_result();
                outcome.result.mailstore_trouble = false;
                outcome.result.connection_lost = false;
                co_return outcome;
            }
            step.broke_off = sent.error().reply;
            step.next = session_.io_failed(sent.error().reply);
        } else {
            step = co_await converse(session_.body_sent());
        }
    }
    outcome.retry_on_fresh = step.failed_in_rset;
    outcome.broke_off = step.broke_off;
    if (step.next != Next::kDone) {
        close();
        outcome.result = session_.take_result();
        outcome.result.mailstore_trouble = true;
        outcome.result.connection_lost = true;
        co_return outcome;
    }
    outcome.result = session_.take_result();
    if (!session_.usable()) {
        close();
    }
    unwatch();
    co_return outcome;
}

asio::awaitable<void> Connection::quit() {
    if (!is_open()) {
        co_return;
    }
    const Next next = session_.quit();
    (void)next;
    const Io io =
        co_await write_all(session_.take_output(), Clock::now() + options_->command_timeout);
    if (!io.timed_out && !io.ec) {
        (void)co_await read_reply(options_->command_timeout);
    }
    close();
}

} // namespace spoold::drain::connectors
