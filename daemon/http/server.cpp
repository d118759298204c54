#include "daemon/http/server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/http/message_generator.hpp>
#include <chrono>
#include <exception>
#include <map>

#include "common/escaped.hpp"
#include "common/log.hpp"
#include "daemon/http/routes.hpp"

namespace spoold::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

// A scrape or a page poll is a few hundred bytes each way: anything slower is a stuck or
// hostile client, and the connection slot is better given to someone else.
constexpr auto kReadTimeout = std::chrono::seconds(10);
constexpr auto kWriteTimeout = std::chrono::seconds(10);
// After EMFILE and the like, accepting again at once would spin.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

} // namespace

namespace detail {

// Touched only on the strand once start() has returned, so it needs no mutex.
struct ServerState {
    ServerState(const asio::any_io_executor& executor, std::string address_in,
                std::uint16_t port_in, StatusSource status_in)
        : strand(asio::make_strand(executor)), address(std::move(address_in)), port(port_in),
          status(std::move(status_in)), acceptor(strand) {}

    asio::strand<asio::any_io_executor> strand;
    std::string address;
    std::uint16_t port;
    StatusSource status;
    tcp::acceptor acceptor;
    bool started = false;
    bool stopped = false;
    std::uint64_t next_connection = 0;
    std::map<std::uint64_t, beast::tcp_stream*> connections; // so stop() can close them
};

} // namespace detail

namespace {

using StatePtr = std::shared_ptr<detail::ServerState>;

// co_spawn completion: an exception that escaped a coroutine is a bug worth a log line,
// never a silent disappearance nor a crash of the whole daemon.
struct LogEscaped {
    std::string_view where;
    void operator()(const std::exception_ptr& e) const {
        if (e) {
            log_escaped(fmt::format("event=http_coroutine_failed where={}", where), e);
        }
    }
};

bool quiet_end(const boost::system::error_code& ec) {
    return ec == bhttp::error::end_of_stream || ec == asio::error::operation_aborted ||
           ec == beast::error::timeout || ec == asio::error::connection_reset ||
           ec == asio::error::eof;
}

asio::awaitable<void> serve_connection(tcp::socket socket, StatePtr state) {
    beast::tcp_stream stream(std::move(socket));
    if (state->stopped) {
        co_return;
    }
    const std::uint64_t id = state->next_connection++;
    state->connections.emplace(id, &stream);
    // Erase on every way out, exceptions included, so stop() never touches a dead stream.
    struct Unregister {
        detail::ServerState& state;
        std::uint64_t id;
        ~Unregister() { state.connections.erase(id); }
    } unregister{*state, id};

    beast::flat_buffer buffer(kReadBufferLimit);
    for (;;) {
        RequestParser parser;
        limit_request(parser);
        stream.expires_after(kReadTimeout);
        auto [read_ec, read_n] =
            co_await bhttp::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
        (void)read_n;
        if (read_ec) {
            if (!quiet_end(read_ec)) {
                log::debug("event=http_bad_request error={}", log::quote(read_ec.message()));
            }
            break;
        }
        bhttp::message_generator message = respond(parser.get(), state->status);
        const bool keep_alive = message.keep_alive();
        stream.expires_after(kWriteTimeout);
        auto [write_ec, write_n] = co_await beast::async_write(stream, std::move(message),
                                                               asio::as_tuple(asio::use_awaitable));
        (void)write_n;
        if (write_ec || !keep_alive || state->stopped) {
            break;
        }
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

asio::awaitable<void> accept_loop(StatePtr state) {
    while (!state->stopped) {
        auto [ec, socket] =
            co_await state->acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
        if (state->stopped || ec == asio::error::operation_aborted) {
            co_return;
        }
        if (ec) {
            log::warn("event=http_accept_failed error={}", log::quote(ec.message()));
            asio::steady_timer pause(state->strand, kAcceptRetryDelay);
            co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
            continue;
        }
        if (state->connections.size() >= kMaxConnections) {
            // Bounded memory beats serving everyone: a scraper retries next interval.
            log::warn("event=http_connection_refused reason=too_many open={}",
                      state->connections.size());
            boost::system::error_code ignored;
            socket.close(ignored);
            continue;
        }
        asio::co_spawn(state->strand, serve_connection(std::move(socket), state),
                       LogEscaped{"http connection"});
    }
}

void close_all(detail::ServerState& state) {
    state.stopped = true;
    boost::system::error_code ignored;
    state.acceptor.close(ignored);
    for (auto& [id, stream] : state.connections) {
        stream->socket().close(ignored);
    }
}

} // namespace

HttpServer::HttpServer(const asio::any_io_executor& executor, std::string address,
                       std::uint16_t port, StatusSource status)
    : state_(std::make_shared<detail::ServerState>(executor, std::move(address), port,
                                                   std::move(status))) {}

HttpServer::~HttpServer() { stop(); }

Result<std::uint16_t> HttpServer::start() {
    detail::ServerState& st = *state_;
    if (st.started) {
        return fail(ErrorKind::kInternal, "http server started twice");
    }
    boost::system::error_code ec;
    const auto address = asio::ip::make_address(st.address, ec);
    if (ec) {
        return fail(ErrorKind::kInvalid, "http: bad address " + st.address + ": " + ec.message());
    }
    const tcp::endpoint endpoint(address, st.port);
    const std::string where = st.address + ":" + std::to_string(st.port);
    if (st.acceptor.open(endpoint.protocol(), ec); ec) {
        return fail(ErrorKind::kIo, "http: open " + where + ": " + ec.message());
    }
    // Restarting while old connections sit in TIME_WAIT must not fail the bind.
    if (st.acceptor.set_option(tcp::acceptor::reuse_address(true), ec); ec) {
        return fail(ErrorKind::kIo, "http: reuse_address " + where + ": " + ec.message());
    }
    if (st.acceptor.bind(endpoint, ec); ec) {
        return fail(ErrorKind::kIo, "http: bind " + where + ": " + ec.message());
    }
    if (st.acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) {
        return fail(ErrorKind::kIo, "http: listen " + where + ": " + ec.message());
    }
    const std::uint16_t bound = st.acceptor.local_endpoint(ec).port();
    if (ec) {
        return fail(ErrorKind::kIo, "http: local_endpoint: " + ec.message());
    }
    st.started = true;
    asio::co_spawn(st.strand, accept_loop(state_), LogEscaped{"http accept"});
    log::info("event=http_listening address={} port={}", st.address, bound);
    return bound;
}

void HttpServer::stop() {
    asio::dispatch(state_->strand, [state = state_] { close_all(*state); });
}

} // namespace spoold::http
