// A scripted LMTP (or SMTP) server for connector tests, on 127.0.0.1 port 0 or a Unix
// socket in the test's temp dir. Enough of RFC 2033/5321 to drive the client (LHLO/EHLO,
// STARTTLS, MAIL, RCPT, DATA with per-recipient or one reply, RSET, QUIT); not a mail server.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <type_traits>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <exception>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/log.hpp"

namespace spoold::test {

struct FakeLmtpScript {
    // Reply to RCPT per address (default "250 2.1.5 OK").
    std::map<std::string, std::string> rcpt;
    // Reply after the dot per address (default "250 2.0.0 <addr> Saved").
    std::map<std::string, std::string> final;
    bool stall = false;               // accept, then never say anything
    bool close_after_message = false; // drop the connection after the final replies
    std::string capabilities =
        "250-fake\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n";
    bool smtp = false; // EHLO, and one reply after the dot for all recipients
    // SMTP over TCP: offer STARTTLS with this context (certificate and key loaded).
    std::shared_ptr<boost::asio::ssl::context> tls;
    bool stall_tls_handshake = false; // say 220 to STARTTLS, then never handshake
    bool stall_after_tls = false;     // handshake, then never answer EHLO
};

struct FakeLmtpLog {
    int connections = 0;
    std::vector<std::string> commands;
    std::vector<std::string> bodies; // un-dot-stuffed, CRLF line ends, as the server received
    int tls_sessions = 0;            // completed server-side TLS handshakes
};

inline void log_escaped(std::exception_ptr e, const char* what) {
    if (!e) {
        return;
    }
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        log::error("event=test_coroutine_failed what={} error={}", what, log::quote(ex.what()));
    }
}

template <typename Protocol> class FakeLmtpServer {
public:
    using Acceptor = typename Protocol::acceptor;
    using Socket = typename Protocol::socket;

    FakeLmtpServer(boost::asio::io_context& ctx, typename Protocol::endpoint ep,
                   FakeLmtpScript script)
        : acceptor_(ctx, ep), script_(std::move(script)), log_(std::make_shared<FakeLmtpLog>()) {
        boost::asio::co_spawn(ctx, accept_loop(this),
                              [](std::exception_ptr e) { log_escaped(e, "fake_lmtp_accept"); });
    }
    ~FakeLmtpServer() {
        boost::system::error_code ignored;
        acceptor_.close(ignored);
        for (auto& s : held_) {
            s->close(ignored);
        }
    }

    typename Protocol::endpoint endpoint() const { return acceptor_.local_endpoint(); }
    FakeLmtpLog& log() { return *log_; }
    FakeLmtpScript& script() { return script_; }

private:
    static boost::asio::awaitable<void> accept_loop(FakeLmtpServer* self) {
        constexpr auto kTuple = boost::asio::as_tuple(boost::asio::use_awaitable);
        while (self->acceptor_.is_open()) {
            auto [ec, sock] = co_await self->acceptor_.async_accept(kTuple);
            if (ec) {
                co_return;
            }
            ++self->log_->connections;
            auto held = std::make_shared<Socket>(std::move(sock));
            self->held_.push_back(held);
            if (self->script_.stall) {
                continue; // keep it open, say nothing
            }
            boost::asio::co_spawn(
                self->acceptor_.get_executor(), session(held, self->script_, self->log_),
                [](std::exception_ptr e) { log_escaped(e, "fake_lmtp_session"); });
        }
    }

    template <typename Stream>
    static boost::asio::awaitable<void> say(std::shared_ptr<Stream> sock, std::string text) {
        (void)co_await boost::asio::async_write(*sock, boost::asio::buffer(text),
                                                boost::asio::as_tuple(boost::asio::use_awaitable));
    }

    template <typename Stream>
    static boost::asio::awaitable<void> session(std::shared_ptr<Stream> sock, FakeLmtpScript script,
                                                std::shared_ptr<FakeLmtpLog> log,
                                                bool in_tls = false) {
        constexpr auto kTuple = boost::asio::as_tuple(boost::asio::use_awaitable);
        std::string in;
        if (!in_tls) {
            co_await say(sock, "220 fake ready\r\n");
        }
        std::vector<std::string> accepted;
        while (true) {
            auto [ec, n] = co_await boost::asio::async_read_until(
                *sock, boost::asio::dynamic_buffer(in), "\r\n", kTuple);
            if (ec) {
                co_return;
            }
            std::string line = in.substr(0, n - 2);
            in.erase(0, n);
            log->commands.push_back(line);
            std::string reply;
            if (line.starts_with("LHLO") || (script.smtp && line.starts_with("EHLO"))) {
                if (in_tls && script.stall_after_tls) {
                    co_await hold_forever(sock);
                    co_return;
                }
                reply = script.capabilities;
                if (script.tls && !in_tls) {
                    reply = "250-fake\r\n250-STARTTLS\r\n" +
                            script.capabilities.substr(script.capabilities.find("\r\n") + 2);
                }
            } else if (line == "STARTTLS" && script.tls && !in_tls) {
                if constexpr (std::is_same_v<Stream, boost::asio::ip::tcp::socket>) {
                    co_await say(sock, "220 2.0.0 Ready to start TLS\r\n");
                    if (script.stall_tls_handshake) {
                        co_await hold_forever(sock);
                        co_return;
                    }
                    auto tls =
                        std::make_shared<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>>(
                            std::move(*sock), *script.tls);
                    auto [hec] = co_await tls->async_handshake(
                        boost::asio::ssl::stream_base::server, kTuple);
                    if (hec) {
                        co_return;
                    }
                    ++log->tls_sessions;
                    co_await session(tls, script, log, true);
                    co_return;
                } else {
                    reply = "454 4.7.0 TLS not available\r\n";
                }
            } else if (line.starts_with("MAIL FROM:")) {
                accepted.clear();
                reply = "250 2.1.0 OK\r\n";
            } else if (line.starts_with("RCPT TO:<")) {
                const std::string addr = line.substr(9, line.find('>') - 9);
                auto it = script.rcpt.find(addr);
                reply = it != script.rcpt.end() ? it->second : "250 2.1.5 OK\r\n";
                if (reply.starts_with("2")) {
                    accepted.push_back(addr);
                }
            } else if (line == "DATA") {
                if (accepted.empty()) {
                    reply = "503 5.5.1 No valid recipients\r\n";
                } else {
                    co_await say(sock, "354 OK\r\n");
                    std::string body;
                    while (true) {
                        auto [ec2, m] = co_await boost::asio::async_read_until(
                            *sock, boost::asio::dynamic_buffer(in), "\r\n", kTuple);
                        if (ec2) {
                            co_return;
                        }
                        std::string data_line = in.substr(0, m);
                        in.erase(0, m);
                        if (data_line == ".\r\n") {
                            break;
                        }
                        if (data_line.starts_with(".")) {
                            data_line.erase(0, 1);
                        }
                        body += data_line;
                    }
                    log->bodies.push_back(body);
                    if (script.smtp) {
                        accepted.resize(1); // SMTP: one reply for the message
                    }
                    for (const auto& a : accepted) {
                        auto it = script.final.find(a);
                        reply += it != script.final.end() ? it->second
                                                          : "250 2.0.0 <" + a + "> Saved\r\n";
                    }
                    co_await say(sock, reply);
                    if (script.close_after_message) {
                        boost::system::error_code ignored;
                        if constexpr (std::is_same_v<Stream, Socket>) {
                            sock->close(ignored);
                        } else {
                            sock->next_layer().close(ignored);
                        }
                        co_return;
                    }
                    continue;
                }
            } else if (line == "RSET") {
                reply = "250 2.0.0 OK\r\n";
            } else if (line == "QUIT") {
                co_await say(sock, "221 2.0.0 Bye\r\n");
                co_return;
            } else {
                reply = "500 5.5.2 what\r\n";
            }
            co_await say(sock, reply);
        }
    }

    // Reads and discards until the peer goes: a server that hangs mid-protocol.
    template <typename Stream>
    static boost::asio::awaitable<void> hold_forever(std::shared_ptr<Stream> sock) {
        std::array<char, 4096> sink{};
        while (true) {
            auto [ec, n] = co_await sock->async_read_some(
                boost::asio::buffer(sink), boost::asio::as_tuple(boost::asio::use_awaitable));
            if (ec) {
                co_return;
            }
            (void)n;
        }
    }

    Acceptor acceptor_;
    FakeLmtpScript script_;
    std::shared_ptr<FakeLmtpLog> log_;
    std::vector<std::shared_ptr<Socket>> held_;
};

} // namespace spoold::test
