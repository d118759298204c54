#include "smtp/connection.hpp"

#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <optional>
#include <vector>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "io/callback.hpp"
#include "io/timed.hpp"
#include "smtp/admission.hpp"
#include "smtp/connection_io.hpp"
#include "smtp/session.hpp"

// Driver style: C++20 coroutines, one per connection. Every read, write and handshake
// races a steady_timer through the awaitable || operator, so the deadline cancels the I/O
// (and works the same through asio::ssl). Results use as_tuple: errors are values here,
// not exceptions.

namespace spoold::smtp {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using Millis = std::chrono::milliseconds;
using TlsStream = asio::ssl::stream<tcp::socket&>;
using spoold::io::IoResult;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
// Reads are small while commands flow and larger inside a message: idle connections
// cost little (the benchmark holds 5,000 of them) and bodies still move in big pieces.
constexpr std::size_t kCommandReadSize = 4096;
constexpr std::size_t kDataReadSize = 64 * 1024;

TlsInfo tls_info(SSL* ssl) {
    return TlsInfo{SSL_get_version(ssl), SSL_get_cipher_name(ssl),
                   SSL_get_cipher_bits(ssl, nullptr)};
}

void append_actions(std::deque<Action>& queue, Actions actions) {
    for (auto& a : actions) {
        queue.push_back(std::move(a));
    }
}

// Writes `out` over TLS once it is on, else over the socket, and empties it.
asio::awaitable<IoResult> write_out(tcp::socket* socket, TlsStream* tls, asio::steady_timer* timer,
                                    std::string* out, Millis timeout) {
    IoResult w;
    if (out->empty()) {
        co_return w;
    }
    if (tls != nullptr) {
        w = co_await spoold::io::write_all_for(tls, timer, asio::buffer(*out), timeout);
    } else {
        w = co_await spoold::io::write_all_for(socket, timer, asio::buffer(*out), timeout);
    }
    out->clear();
    co_return w;
}

asio::awaitable<IoResult> read_in(tcp::socket* socket, TlsStream* tls, asio::steady_timer* timer,
                                  std::vector<char>* buf, Millis timeout) {
    if (tls != nullptr) {
        co_return co_await spoold::io::read_some_for(tls, timer, asio::buffer(*buf), timeout);
    }
    co_return co_await spoold::io::read_some_for(socket, timer, asio::buffer(*buf), timeout);
}

// What the loop works on: all of it lives in run_connection's frame, which awaits the loop.
struct Driver {
    tcp::socket* socket = nullptr;
    const Listener* listener = nullptr; // its TLS context, for STARTTLS
    Conn* conn = nullptr;               // the stop flag and the read timer
    Session* session = nullptr;
    FilterSession* filters = nullptr; // null: no filters configured
    std::string client;
    std::string early; // client bytes that came with the PROXY header
    Millis command_timeout{};
    Millis data_timeout{};
};

// Carries out the session's actions in order (replies batched into one write, appends,
// filter questions and the commit awaited one at a time, STARTTLS), reads when the session
// wants input, and ends the connection.
asio::awaitable<void> drive(Driver* driver) {
    Driver& d = *driver;
    Session& session = *d.session;
    asio::steady_timer write_timer(d.socket->get_executor());
    std::optional<TlsStream> tls;
    std::deque<Action> queue;
    append_actions(queue, session.greeting());
    std::string out;
    std::vector<char> buf(kCommandReadSize);
    bool open = true;
    bool client_gone = false; // the connection failed: no reply can reach the client any more

    while (open) {
        while (open && !queue.empty()) {
            Action action = std::move(queue.front());
            queue.pop_front();
            if (auto* reply = std::get_if<Reply>(&action)) {
                out += reply->wire();
            } else if (auto* append = std::get_if<AppendBody>(&action)) {
                // Awaited before reading on: one append in flight, and the session's
                // buffers plus one read bound the memory of this connection.
                auto start = [m = append->message, data = std::move(append->data)](
                                 std::function<void(Status)> cb) mutable {
                    m->append(std::move(data), std::move(cb));
                };
                Status status = co_await spoold::io::from_callback<Status>(std::move(start));
                append_actions(queue, session.on_append_done(std::move(status)));
            } else if (auto* ask = std::get_if<AskFilters>(&action)) {
                if (!out.empty() && d.filters->awaits_reply(ask->event)) {
                    // The client hears what is settled before the filters take their time
                    // (when they answer at once, it goes out with what follows).
                    const IoResult w = co_await write_out(d.socket, tls ? &*tls : nullptr,
                                                          &write_timer, &out, d.command_timeout);
                    if (w.ec || w.timed_out) {
                        session.on_disconnect();
                        client_gone = true;
                        open = false;
                        break;
                    }
                }
                auto start = [f = d.filters, e = std::move(ask->event)](
                                 std::function<void(FilterVerdict)> cb) mutable {
                    f->ask(std::move(e), std::move(cb));
                };
                FilterVerdict verdict =
                    co_await spoold::io::from_callback<FilterVerdict>(std::move(start));
                append_actions(queue, session.on_filter_verdict(std::move(verdict)));
            } else if (std::holds_alternative<AbortFilters>(action)) {
                d.filters->abort();
            } else if (auto* commit = std::get_if<CommitMessage>(&action)) {
                auto start = [m = commit->message, i = std::move(commit->info),
                              h = std::move(commit->head)](
                                 std::function<void(Result<CommitInfo>)> cb) mutable {
                    m->commit(std::move(i), std::move(h), std::move(cb));
                };
                Result<CommitInfo> result =
                    co_await spoold::io::from_callback<Result<CommitInfo>>(std::move(start));
                append_actions(queue, session.on_commit_result(std::move(result)));
            } else if (std::holds_alternative<StartTls>(action)) {
                const IoResult w =
                    co_await write_out(d.socket, nullptr, &write_timer, &out, d.command_timeout);
                if (w.ec || w.timed_out) {
                    client_gone = true;
                    open = false;
                    break;
                }
                tls.emplace(*d.socket, *d.listener->tls);
                write_timer.expires_after(d.command_timeout);
                auto r =
                    co_await (tls->async_handshake(asio::ssl::stream_base::server, kUseTuple) ||
                              write_timer.async_wait(kUseTuple));
                if (r.index() == 1 || std::get<0>(std::get<0>(r))) {
                    log::info("event=tls_failed client={} error={}", d.client,
                              r.index() == 1 ? std::string("timeout")
                                             : log::quote(std::get<0>(std::get<0>(r)).message()));
                    session.on_disconnect();
                    tls.reset(); // no TLS session to end
                    client_gone = true;
                    open = false;
                    break;
                }
                append_actions(queue, session.on_tls_established(tls_info(tls->native_handle())));
            } else if (std::holds_alternative<Close>(action)) {
                open = false;
            }
        }
        // One write per batch of replies: pipelined commands get one answer packet.
        const IoResult w = co_await write_out(d.socket, tls ? &*tls : nullptr, &write_timer, &out,
                                              d.command_timeout);
        if (w.ec || w.timed_out) {
            session.on_disconnect();
            client_gone = true;
            break;
        }
        if (!open) {
            break;
        }
        if (d.conn->stop && !session.busy()) {
            append_actions(queue, session.on_shutdown());
            continue;
        }
        if (!session.wants_input()) {
            // Cannot happen: appends and commits are awaited above. Refuse to spin.
            log::error("event=session_stuck client={}", d.client);
            session.on_disconnect();
            break; // the client is still there: it gets a clean close, if no reply
        }
        if (!d.early.empty()) {
            append_actions(queue, session.feed(d.early));
            d.early.clear();
            continue;
        }
        const bool data = session.in_data();
        const std::size_t want = data ? kDataReadSize : kCommandReadSize;
        if (buf.size() != want) {
            std::vector<char>(want).swap(buf); // shrink back after a message, too
        }
        const IoResult r = co_await read_in(d.socket, tls ? &*tls : nullptr, &d.conn->read_timer,
                                            &buf, data ? d.data_timeout : d.command_timeout);
        if (r.timed_out) {
            append_actions(queue, d.conn->stop ? session.on_shutdown() : session.on_timeout());
            continue;
        }
        if (r.ec) {
            session.on_disconnect();
            client_gone = true;
            break;
        }
        append_actions(queue, session.feed(std::string_view(buf.data(), r.bytes)));
    }
    if (!client_gone) {
        co_await close_gracefully(d.socket, tls ? &*tls : nullptr, &write_timer);
    }
}

} // namespace

asio::awaitable<void> run_connection(std::shared_ptr<Server::Shared> shared,
                                     std::shared_ptr<Listener> listener, tcp::socket socket,
                                     std::shared_ptr<Conn> conn, Peer peer) {
    SlotGuard slot(shared, conn, peer.proxy.empty() ? peer.client : std::string());
    std::string early;
    if (!peer.proxy.empty()) {
        asio::steady_timer timer(socket.get_executor());
        const auto header = co_await read_proxy_header(&socket, &timer, &peer.proxy, &early);
        if (!header) {
            boost::system::error_code ec;
            socket.close(ec);
            co_return;
        }
        if (!header->local) {
            peer.client = header->source_address;
            peer.client_port = header->source_port;
            peer.local = header->destination_address;
            peer.local_port = header->destination_port;
        }
        if (!slot.count_client(peer.client)) {
            const Refusal refusal = client_refusal(shared->session_defaults().hostname);
            log::info("event=reject client={} proxy={} reason={} reply={}", peer.client, peer.proxy,
                      refusal.reason, log::quote(refusal.line()));
            co_await spoold::io::write_all_for(&socket, &timer, asio::buffer(refusal.wire),
                                               kRejectWriteTimeout);
            co_await close_gracefully(&socket, nullptr, &timer);
            co_return;
        }
    }
    const std::string client = peer.client;
    const SessionDefaults defaults = shared->session_defaults();
    SessionSettings settings;
    settings.hostname = defaults.hostname;
    settings.authserv_id = defaults.authserv_id;
    settings.limits = defaults.limits;
    settings.starttls_offered = listener->tls != nullptr;
    settings.client_addr = client;
    settings.client_port = peer.client_port;
    settings.local_addr = peer.local;
    settings.local_port = peer.local_port;
    // Closes the filters' connections however this coroutine ends.
    const std::unique_ptr<FilterSession, void (*)(FilterSession*)> filters(
        shared->filters != nullptr ? shared->filters->open().release() : nullptr,
        [](FilterSession* f) {
            if (f != nullptr) {
                f->close();
                delete f;
            }
        });
    settings.filters = filters != nullptr;
    const Millis command_timeout = settings.limits.command_timeout;
    const Millis data_timeout = settings.limits.data_timeout;
    Session session(std::move(settings), shared->intake);
    if (peer.proxy.empty()) {
        log::info("event=connect client={}", client);
    } else {
        log::info("event=connect client={} proxy={}", client, peer.proxy);
    }
    metrics::spoold_metrics().smtp_connections_total.inc();

    // By pointer to a named local: g++ 12 destroys a temporary argument in a co_await
    // expression twice.
    Driver driver{&socket, listener.get(),   conn.get(),      &session,    filters.get(),
                  client,  std::move(early), command_timeout, data_timeout};
    co_await drive(&driver);
    boost::system::error_code ec;
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.close(ec);
    log::info("event=disconnect client={} messages={}", client, session.messages_accepted());
}

} // namespace spoold::smtp
