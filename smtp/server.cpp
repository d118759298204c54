#include "smtp/server.hpp"

#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>

#include "common/escaped.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "io/callback.hpp"
#include "io/timed.hpp"
#include "policy/cidr.hpp"
#include "smtp/proxy_protocol.hpp"
#include "smtp/session.hpp"

// Driver style: C++20 coroutines (one per connection, one per listener). Every read,
// write and handshake races a steady_timer through the awaitable || operator, so the
// deadline cancels the I/O (and works the same through asio::ssl). Results use
// as_tuple: errors are values here, not exceptions.

namespace spoold::smtp {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using Millis = std::chrono::milliseconds;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
// Reads are small while commands flow and larger inside a message: idle connections
// cost little (the benchmark holds 5,000 of them) and bodies still move in big pieces.
constexpr std::size_t kCommandReadSize = 4096;
constexpr std::size_t kDataReadSize = 64 * 1024;
constexpr Millis kAcceptBackoff{100};       // after EMFILE and friends: do not spin
constexpr Millis kRejectWriteTimeout{5000}; // for the 421 to a connection over the limits
// Closing: how long the TLS close_notify exchange and the wait for the client's FIN may take.
constexpr Millis kCloseTimeout{5000};
constexpr std::size_t kLingerMaxBytes = 256 * 1024; // read and dropped while closing, at most
// A trusted proxy's header must arrive within this (Postfix's smtpd_upstream_proxy_timeout).
constexpr Millis kProxyTimeout{5000};

struct Listener {
    explicit Listener(const asio::any_io_executor& ex) : acceptor(ex) {}
    tcp::acceptor acceptor;
    std::unique_ptr<asio::ssl::context> tls; // null: STARTTLS not offered
    // The PROXY protocol is on when this is not empty: every connection must come from
    // one of these networks and start with a PROXY header.
    std::vector<policy::Cidr> trusted_proxies;

    bool proxy_protocol() const { return !trusted_proxies.empty(); }
    bool trusts(const asio::ip::address& peer) const {
        if (trusted_proxies.empty()) {
            return false;
        }
        const auto ip = policy::parse_ip(peer.to_string());
        return ip && std::any_of(trusted_proxies.begin(), trusted_proxies.end(),
                                 [&](const policy::Cidr& c) { return c.contains(*ip); });
    }
};

// Who is at the other end of a connection: the peer, or the client a proxy speaks for.
struct Peer {
    std::string client; // address text, as logs, limits and the session use it
    std::uint16_t client_port = 0;
    std::string proxy; // the load balancer's address when a PROXY header named the client
    std::string local; // our address as the client addressed it
    std::uint16_t local_port = 0;
};

// Per connection, shared between its coroutine and Server::stop().
struct Conn {
    explicit Conn(const asio::any_io_executor& ex) : executor(ex), read_timer(ex) {}
    asio::any_io_executor executor; // the connection's strand
    asio::steady_timer read_timer;  // read deadline; stop() cancels it to wake the reader
    bool stop = false;              // touched on the strand only
};

// timed_out: the deadline passed, or stop() woke the reader; the caller checks Conn::stop.
using spoold::io::IoResult;

void log_escaped(const std::exception_ptr& e) { spoold::log_escaped("event=coroutine_failed", e); }

TlsInfo tls_info(SSL* ssl) {
    return TlsInfo{SSL_get_version(ssl), SSL_get_cipher_name(ssl),
                   SSL_get_cipher_bits(ssl, nullptr)};
}

} // namespace

struct Server::Shared {
    Shared(asio::io_context& io_context, Intake& in, Filters* f)
        : io(io_context), intake(in), filters(f), control(asio::make_strand(io_context)),
          stop_timer(control) {}

    asio::io_context& io;
    Intake& intake;
    Filters* filters; // null: none configured
    // Acceptors, stop_timer and stop_done live on this strand.
    asio::any_io_executor control;
    asio::steady_timer stop_timer;
    std::function<void()> stop_done;

    mutable std::mutex mutex; // guards everything below
    std::string hostname;
    std::string authserv_id;
    policy::LimitsConfig limits;
    std::vector<policy::ListenerConfig> listener_configs;
    std::vector<std::shared_ptr<Listener>> listeners;
    std::vector<tcp::endpoint> endpoints;
    std::size_t total = 0;
    std::unordered_map<std::string, std::uint32_t> per_client;
    std::set<std::shared_ptr<Conn>> conns;
    bool stopping = false;

    void configure(const policy::Config& config) {
        const std::lock_guard lock(mutex);
        hostname = config.hostname;
        authserv_id = config.our_authserv_id();
        limits = config.limits;
    }

    // Runs on `control`.
    void fire_done() {
        if (stop_done) {
            auto done = std::move(stop_done);
            stop_done = nullptr;
            stop_timer.cancel();
            done();
        }
    }
};

namespace {

using Shared = Server::Shared;

// Releases a connection's slot however its coroutine ends (return, exception, or the
// frame being destroyed with the io_context).
class SlotGuard {
public:
    // `client` is empty while the connection counts against the total only (a proxied
    // connection before its header named the client: see count_client).
    SlotGuard(std::shared_ptr<Shared> shared, std::shared_ptr<Conn> conn, std::string client)
        : shared_(std::move(shared)), conn_(std::move(conn)), client_(std::move(client)) {}
    SlotGuard(const SlotGuard&) = delete;
    SlotGuard& operator=(const SlotGuard&) = delete;
    ~SlotGuard() {
        bool notify = false;
        {
            const std::lock_guard lock(shared_->mutex);
            --shared_->total;
            if (auto it = shared_->per_client.find(client_);
                !client_.empty() && it != shared_->per_client.end() && --it->second == 0) {
                shared_->per_client.erase(it);
            }
            shared_->conns.erase(conn_);
            notify = shared_->stopping && shared_->total == 0;
        }
        if (notify) {
            asio::post(shared_->control, [s = shared_] { s->fire_done(); });
        }
    }

    // Counts the connection against `client`'s limit; false (and not counted) when the
    // client already has max_sessions_per_client connections.
    bool count_client(const std::string& client) {
        const std::lock_guard lock(shared_->mutex);
        auto& n = shared_->per_client[client];
        if (n >= shared_->limits.max_sessions_per_client) {
            if (n == 0) {
                shared_->per_client.erase(client);
            }
            return false;
        }
        ++n;
        client_ = client;
        return true;
    }

private:
    std::shared_ptr<Shared> shared_;
    std::shared_ptr<Conn> conn_;
    std::string client_;
};

std::string too_many_from_client(const std::string& hostname) {
    return fmt::format("421 4.7.0 {} Too many connections from your address, try again later\r\n",
                       hostname);
}

// Reads a trusted proxy's PROXY header and fills in the client it names. Bytes read after
// the header (a client that spoke first) are left in `early`. False when the header is
// missing, broken or late: the connection is then closed without a word, since the peer
// is a load balancer, not a mail client.
asio::awaitable<bool> read_proxy_header(tcp::socket* socket, asio::steady_timer* timer, Peer* peer,
                                        std::string* early) {
    std::string got;
    std::vector<char> buf(kProxyV2MaxBytes);
    const auto until = std::chrono::steady_clock::now() + kProxyTimeout;
    for (;;) {
        const ProxyParse p = parse_proxy_header(got);
        if (p.status == ProxyStatus::kDone) {
            if (!p.header.local) {
                peer->client = p.header.source_address;
                peer->client_port = p.header.source_port;
                peer->local = p.header.destination_address;
                peer->local_port = p.header.destination_port;
            }
            early->assign(got, p.consumed);
            co_return true;
        }
        const auto left =
            std::chrono::duration_cast<Millis>(until - std::chrono::steady_clock::now());
        if (p.status == ProxyStatus::kInvalid || left.count() <= 0) {
            log::warn("event=proxy_header_refused proxy={} error={}", peer->proxy,
                      log::quote(p.status == ProxyStatus::kInvalid ? p.error : "timeout"));
            co_return false;
        }
        const IoResult r = co_await spoold::io::read_some_for(
            socket, timer, asio::buffer(buf.data(), kProxyV2MaxBytes - got.size()), left);
        if (r.timed_out || r.ec) {
            log::warn("event=proxy_header_refused proxy={} error={}", peer->proxy,
                      log::quote(r.timed_out ? "timeout" : r.ec.message()));
            co_return false;
        }
        got.append(buf.data(), r.bytes);
    }
}

// Ends a connection whose client is still there so that our last reply reaches it: the
// TLS close_notify first (RFC 8446 6.1; without it a client sees a truncation attack, not
// a clean close), then our FIN, then what the client still sends is read and dropped until
// its FIN or a deadline. Closing a socket with unread input makes the kernel send a reset,
// and a reset can destroy the reply still in flight to the client.
asio::awaitable<void> close_gracefully(tcp::socket* socket, asio::ssl::stream<tcp::socket&>* tls,
                                       asio::steady_timer* timer) {
    if (tls != nullptr) {
        timer->expires_after(kCloseTimeout);
        co_await (tls->async_shutdown(kUseTuple) || timer->async_wait(kUseTuple));
    }
    boost::system::error_code ec;
    socket->shutdown(tcp::socket::shutdown_send, ec);
    std::vector<char> sink(4096);
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

void append_actions(std::deque<Action>& queue, Actions actions) {
    for (auto& a : actions) {
        queue.push_back(std::move(a));
    }
}

asio::awaitable<void> run_connection(std::shared_ptr<Shared> shared,
                                     std::shared_ptr<Listener> listener, tcp::socket socket,
                                     std::shared_ptr<Conn> conn, Peer peer) {
    SlotGuard slot(shared, conn, peer.proxy.empty() ? peer.client : std::string());
    asio::steady_timer write_timer(socket.get_executor());
    std::string early; // client bytes that came with the PROXY header
    if (!peer.proxy.empty()) {
        if (!co_await read_proxy_header(&socket, &write_timer, &peer, &early)) {
            boost::system::error_code ec;
            socket.close(ec);
            co_return;
        }
        if (!slot.count_client(peer.client)) {
            std::string refusal;
            {
                const std::lock_guard lock(shared->mutex);
                refusal = too_many_from_client(shared->hostname);
            }
            log::info("event=reject client={} proxy={} reason=session-limit reply={}", peer.client,
                      peer.proxy,
                      log::quote(std::string_view(refusal).substr(0, refusal.size() - 2)));
            co_await spoold::io::write_all_for(&socket, &write_timer, asio::buffer(refusal),
                                               kRejectWriteTimeout);
            co_await close_gracefully(&socket, nullptr, &write_timer);
            co_return;
        }
    }
    const std::string client = peer.client;
    SessionSettings settings;
    {
        const std::lock_guard lock(shared->mutex);
        settings.hostname = shared->hostname;
        settings.authserv_id = shared->authserv_id;
        settings.limits = shared->limits;
    }
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

    std::optional<asio::ssl::stream<tcp::socket&>> tls;
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
                auto start = [m = append->message,
                              d = std::move(append->data)](std::function<void(Status)> cb) mutable {
                    m->append(std::move(d), std::move(cb));
                };
                Status status = co_await spoold::io::from_callback<Status>(std::move(start));
                append_actions(queue, session.on_append_done(std::move(status)));
            } else if (auto* ask = std::get_if<AskFilters>(&action)) {
                if (!out.empty() && filters->awaits_reply(ask->event)) {
                    // The client hears what is settled before the filters take their time
                    // (when they answer at once, it goes out with what follows).
                    IoResult w;
                    if (tls) {
                        w = co_await spoold::io::write_all_for(&*tls, &write_timer,
                                                               asio::buffer(out), command_timeout);
                    } else {
                        w = co_await spoold::io::write_all_for(&socket, &write_timer,
                                                               asio::buffer(out), command_timeout);
                    }
                    out.clear();
                    if (w.ec || w.timed_out) {
                        session.on_disconnect();
                        client_gone = true;
                        open = false;
                        break;
                    }
                }
                auto start = [f = filters.get(), e = std::move(ask->event)](
                                 std::function<void(FilterVerdict)> cb) mutable {
                    f->ask(std::move(e), std::move(cb));
                };
                FilterVerdict verdict =
                    co_await spoold::io::from_callback<FilterVerdict>(std::move(start));
                append_actions(queue, session.on_filter_verdict(std::move(verdict)));
            } else if (std::holds_alternative<AbortFilters>(action)) {
                filters->abort();
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
                IoResult w;
                if (!out.empty()) {
                    w = co_await spoold::io::write_all_for(&socket, &write_timer, asio::buffer(out),
                                                           command_timeout);
                    out.clear();
                }
                if (w.ec || w.timed_out) {
                    client_gone = true;
                    open = false;
                    break;
                }
                tls.emplace(socket, *listener->tls);
                write_timer.expires_after(command_timeout);
                auto r =
                    co_await (tls->async_handshake(asio::ssl::stream_base::server, kUseTuple) ||
                              write_timer.async_wait(kUseTuple));
                if (r.index() == 1 || std::get<0>(std::get<0>(r))) {
                    log::info("event=tls_failed client={} error={}", client,
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
        if (!out.empty()) {
            // One write per batch of replies: pipelined commands get one answer packet.
            IoResult w;
            if (tls) {
                w = co_await spoold::io::write_all_for(&*tls, &write_timer, asio::buffer(out),
                                                       command_timeout);
            } else {
                w = co_await spoold::io::write_all_for(&socket, &write_timer, asio::buffer(out),
                                                       command_timeout);
            }
            out.clear();
            if (w.ec || w.timed_out) {
                session.on_disconnect();
                client_gone = true;
                break;
            }
        }
        if (!open) {
            break;
        }
        if (conn->stop && !session.busy()) {
            append_actions(queue, session.on_shutdown());
            continue;
        }
        if (!session.wants_input()) {
            // Cannot happen: appends and commits are awaited above. Refuse to spin.
            log::error("event=session_stuck client={}", client);
            session.on_disconnect();
            break; // the client is still there: it gets a clean close, if no reply
        }
        if (!early.empty()) {
            append_actions(queue, session.feed(early));
            early.clear();
            continue;
        }
        const bool data = session.in_data();
        const std::size_t want = data ? kDataReadSize : kCommandReadSize;
        if (buf.size() != want) {
            std::vector<char>(want).swap(buf); // shrink back after a message, too
        }
        IoResult r;
        if (tls) {
            r = co_await spoold::io::read_some_for(&*tls, &conn->read_timer, asio::buffer(buf),
                                                   data ? data_timeout : command_timeout);
        } else {
            r = co_await spoold::io::read_some_for(&socket, &conn->read_timer, asio::buffer(buf),
                                                   data ? data_timeout : command_timeout);
        }
        if (r.timed_out) {
            append_actions(queue, conn->stop ? session.on_shutdown() : session.on_timeout());
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
        co_await close_gracefully(&socket, tls ? &*tls : nullptr, &write_timer);
    }
    boost::system::error_code ec;
    socket.shutdown(tcp::socket::shutdown_both, ec);
    socket.close(ec);
    log::info("event=disconnect client={} messages={}", client, session.messages_accepted());
}

asio::awaitable<void> accept_loop(std::shared_ptr<Shared> shared,
                                  std::shared_ptr<Listener> listener) {
    asio::steady_timer backoff(shared->control);
    for (;;) {
        auto accepted = co_await listener->acceptor.async_accept(
            asio::any_io_executor(asio::make_strand(shared->io)), kUseTuple);
        auto& ec = std::get<0>(accepted);
        if (ec == asio::error::operation_aborted || !listener->acceptor.is_open()) {
            co_return;
        }
        if (ec) {
            log::warn("event=accept_failed error={}", log::quote(ec.message()));
            backoff.expires_after(kAcceptBackoff);
            co_await backoff.async_wait(kUseTuple);
            continue;
        }
        tcp::socket socket = std::move(std::get<1>(accepted));
        // A pipelining client's replies may go out in several writes (each after a
        // filter's or the spool's verdict); Nagle would hold each but the first for the
        // client's delayed ACK, 40 ms a reply.
        boost::system::error_code nodelay_ec;
        socket.set_option(tcp::no_delay(true), nodelay_ec);
        boost::system::error_code peer_ec;
        const auto remote = socket.remote_endpoint(peer_ec);
        const auto local = socket.local_endpoint(peer_ec);
        if (peer_ec) {
            continue; // gone already
        }
        Peer peer{remote.address().to_string(), remote.port(), "", local.address().to_string(),
                  local.port()};
        // A trusted proxy's connection counts against its client's limit once the PROXY
        // header has named the client.
        if (listener->trusts(remote.address())) {
            peer.proxy = peer.client;
        }
        const std::string& client = peer.client;
        std::string refusal;
        std::string_view reason = "session-limit";
        std::shared_ptr<Conn> conn;
        {
            const std::lock_guard lock(shared->mutex);
            const auto& limits = shared->limits;
            const auto it = shared->per_client.find(client);
            const std::uint32_t from_client = it == shared->per_client.end() ? 0 : it->second;
            if (listener->proxy_protocol() && peer.proxy.empty()) {
                // A PROXY listener serves its load balancers only: a peer outside
                // trusted_proxies could name any client it likes.
                refusal =
                    fmt::format("554 5.7.1 {} Connections only through a trusted proxy here\r\n",
                                shared->hostname);
                reason = "proxy-untrusted";
            } else if (shared->stopping) {
                refusal = fmt::format("421 4.3.2 {} Service shutting down, try again later\r\n",
                                      shared->hostname);
            } else if (shared->total >= limits.max_sessions) {
                refusal = fmt::format("421 4.7.0 {} Too many connections, try again later\r\n",
                                      shared->hostname);
            } else if (peer.proxy.empty() && from_client >= limits.max_sessions_per_client) {
                refusal = too_many_from_client(shared->hostname);
            } else {
                ++shared->total;
                if (peer.proxy.empty()) {
                    ++shared->per_client[client];
                }
                conn = std::make_shared<Conn>(socket.get_executor());
                shared->conns.insert(conn);
            }
        }
        if (!conn) {
            log::info("event=reject client={} reason={} reply={}", client, reason,
                      log::quote(std::string_view(refusal).substr(0, refusal.size() - 2)));
            const auto ex = socket.get_executor();
            asio::co_spawn(ex, reject_connection(std::move(socket), std::move(refusal)),
                           log_escaped);
            continue;
        }
        const auto ex = socket.get_executor();
        asio::co_spawn(ex,
                       run_connection(shared, listener, std::move(socket), conn, std::move(peer)),
                       log_escaped);
    }
}

} // namespace

Server::Server(asio::io_context& io, const policy::Config& config, Intake& intake, Filters* filters)
    : io_(io), shared_(std::make_shared<Shared>(io, intake, filters)) {
    shared_->configure(config);
    shared_->listener_configs = config.listeners;
}

Server::~Server() {
    // Connection coroutines keep `shared_` alive; only the acceptors must stop here.
    for (const auto& l : shared_->listeners) {
        asio::post(shared_->control, [l] {
            boost::system::error_code ec;
            l->acceptor.close(ec);
        });
    }
}

Result<std::vector<tcp::endpoint>> Server::start() {
    std::vector<std::shared_ptr<Listener>> listeners;
    std::vector<tcp::endpoint> bound;
    for (const auto& lc : shared_->listener_configs) {
        auto listener = std::make_shared<Listener>(shared_->control);
        if (!lc.tls_certificate.empty() && !lc.tls_key.empty()) {
            auto ctx = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
            ctx->set_options(asio::ssl::context::default_workarounds |
                             asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                             asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 |
                             asio::ssl::context::single_dh_use);
            boost::system::error_code ec;
            ctx->use_certificate_chain_file(lc.tls_certificate, ec);
            if (!ec) {
                ctx->use_private_key_file(lc.tls_key, asio::ssl::context::pem, ec);
            }
            if (ec) {
                return fail(ErrorKind::kConfig,
                            fmt::format("listener {}:{}: TLS certificate/key {} / {}: {}",
                                        lc.address, lc.port, lc.tls_certificate, lc.tls_key,
                                        ec.message()));
            }
            listener->tls = std::move(ctx);
        }
        if (lc.proxy_protocol) {
            for (const auto& net : lc.trusted_proxies) {
                auto cidr = policy::parse_cidr(net);
                if (!cidr) {
                    return fail(ErrorKind::kConfig,
                                fmt::format("listener {}:{}: trusted_proxies: {}", lc.address,
                                            lc.port, cidr.error().message));
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
        bound.push_back(acc.local_endpoint(ec));
        listeners.push_back(std::move(listener));
    }
    {
        const std::lock_guard lock(shared_->mutex);
        shared_->listeners = listeners;
        shared_->endpoints = bound;
    }
    for (auto& l : listeners) {
        asio::co_spawn(shared_->control, accept_loop(shared_, l), log_escaped);
    }
    return bound;
}

const std::vector<tcp::endpoint>& Server::endpoints() const { return shared_->endpoints; }

void Server::reconfigure(const policy::Config& config) { shared_->configure(config); }

void Server::stop(std::chrono::milliseconds grace, std::function<void()> done) {
    std::vector<std::shared_ptr<Conn>> conns;
    {
        const std::lock_guard lock(shared_->mutex);
        shared_->stopping = true;
        conns.assign(shared_->conns.begin(), shared_->conns.end());
    }
    asio::post(shared_->control, [s = shared_, grace, d = std::move(done)]() mutable {
        for (const auto& l : s->listeners) {
            boost::system::error_code ec;
            l->acceptor.close(ec);
        }
        s->stop_done = std::move(d);
        bool idle = false;
        {
            const std::lock_guard lock(s->mutex);
            idle = s->total == 0;
        }
        if (idle) {
            s->fire_done();
            return;
        }
        s->stop_timer.expires_after(grace);
        s->stop_timer.async_wait([s](const boost::system::error_code& ec) {
            if (!ec) {
                std::size_t left = 0;
                {
                    const std::lock_guard lock(s->mutex);
                    left = s->total;
                }
                log::warn("event=stop_grace_expired sessions={}", left);
                s->fire_done();
            }
        });
    });
    for (const auto& c : conns) {
        asio::post(c->executor, [c] {
            c->stop = true;
            c->read_timer.cancel();
        });
    }
}

std::size_t Server::session_count() const {
    const std::lock_guard lock(shared_->mutex);
    return shared_->total;
}

} // namespace spoold::smtp
