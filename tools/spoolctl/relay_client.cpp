#include "tools/spoolctl/relay_client.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

#include "common/dotstuff.hpp"
#include "common/host_port.hpp"

namespace spoold::spoolctl {
namespace {

namespace asio = boost::asio;
using boost::system::error_code;

// Body bytes dot-stuffed and written per step: bounded memory beyond the stored body.
constexpr std::size_t kWritePiece = 64 * 1024;

} // namespace

Result<RelayTarget> parse_relay_target(std::string_view text) {
    const auto parts = host_port::split(text);
    if (!parts || !parts->has_port || parts->host.empty()) {
        return fail(ErrorKind::kInvalid, fmt::format("'{}' is not HOST:PORT", text));
    }
    const auto port = host_port::parse_port(parts->port);
    if (!port) {
        return fail(ErrorKind::kInvalid, fmt::format("'{}': bad port '{}'", text, parts->port));
    }
    RelayTarget t;
    t.host = std::string(parts->host);
    t.port = *port;
    return t;
}

RelayClient::RelayClient(RelayTarget target) : target_(std::move(target)), socket_(io_) {}

Result<std::unique_ptr<RelayClient>> RelayClient::open(const RelayTarget& target) {
    auto client = std::make_unique<RelayClient>(target);
    SPOOLD_CHECK(client->connect());
    return client;
}

error_code RelayClient::run(error_code& ec) {
    io_.restart();
    io_.run_for(target_.timeout);
    if (!io_.stopped()) {
        error_code ignored;
        socket_.close(ignored); // cancels the operation; run() lets its handler finish
        io_.run();
        return asio::error::timed_out;
    }
    return ec;
}

Error RelayClient::io_error(std::string_view during, const error_code& ec) {
    error_code ignored;
    socket_.close(ignored);
    return Error{ec == asio::error::timed_out ? ErrorKind::kTimeout : ErrorKind::kUnavailable,
                 fmt::format("{}:{}: {}: {}", target_.host, target_.port, during, ec.message())};
}

Error RelayClient::refused(std::string_view during, const Reply& reply) {
    return Error{ErrorKind::kUnavailable, fmt::format("{}:{} refused {}: {}", target_.host,
                                                      target_.port, during, reply.summary())};
}

Status RelayClient::connect() {
    asio::ip::tcp::resolver resolver(io_);
    error_code ec = asio::error::would_block;
    asio::ip::tcp::resolver::results_type endpoints;
    resolver.async_resolve(target_.host, std::to_string(target_.port),
                           [&](const error_code& e, asio::ip::tcp::resolver::results_type r) {
                               ec = e;
                               endpoints = std::move(r);
                           });
    if (const auto e = run(ec)) {
        return tl::unexpected(io_error("resolve", e));
    }
    ec = asio::error::would_block;
    asio::async_connect(socket_, endpoints,
                        [&](const error_code& e, const asio::ip::tcp::endpoint&) { ec = e; });
    if (const auto e = run(ec)) {
        return tl::unexpected(io_error("connect", e));
    }
    SPOOLD_TRY(greeting, read_reply());
    if (greeting.code != 220) {
        quit();
        return tl::unexpected(refused("the connection", greeting));
    }
    SPOOLD_TRY(hello, command("EHLO " + target_.helo));
    if (hello.code != 250) {
        quit();
        return tl::unexpected(refused("EHLO", hello));
    }
    return {};
}

Status RelayClient::write(std::string_view data) {
    error_code ec = asio::error::would_block;
    asio::async_write(socket_, asio::buffer(data),
                      [&](const error_code& e, std::size_t) { ec = e; });
    if (const auto e = run(ec)) {
        return tl::unexpected(io_error("write", e));
    }
    return {};
}

Result<Reply> RelayClient::read_reply() {
    for (;;) {
        auto next = parser_.next();
        if (!next) {
            error_code ignored;
            socket_.close(ignored);
            return tl::unexpected(next.error());
        }
        if (*next) {
            return std::move(**next);
        }
        error_code ec = asio::error::would_block;
        std::size_t got = 0;
        socket_.async_read_some(asio::buffer(buffer_), [&](const error_code& e, std::size_t n) {
            ec = e;
            got = n;
        });
        if (const auto e = run(ec)) {
            return tl::unexpected(io_error("read", e));
        }
        parser_.feed(std::string_view(buffer_.data(), got));
    }
}

Result<Reply> RelayClient::command(std::string line) {
    line += "\r\n";
    SPOOLD_CHECK(write(line));
    return read_reply();
}

Status RelayClient::send(const RelayMessage& message) {
    const auto give_up = [this](std::string_view during, const Reply& reply) -> Status {
        if (auto rset = command("RSET"); !rset || rset->code != 250) {
            error_code ignored;
            socket_.close(ignored);
        }
        return tl::unexpected(refused(during, reply));
    };
    SPOOLD_TRY(mail,
               command(fmt::format("MAIL FROM:<{}>{}", message.mail_from, message.mail_params)));
    if (mail.code != 250) {
        return give_up("MAIL", mail);
    }
    for (const auto& r : message.recipients) {
        SPOOLD_TRY(rcpt, command(fmt::format("RCPT TO:<{}>{}", r.address, r.params)));
        if (rcpt.code != 250 && rcpt.code != 251) {
            return give_up(fmt::format("RCPT {}", r.address), rcpt);
        }
    }
    SPOOLD_TRY(data, command("DATA"));
    if (data.code != 354) {
        return give_up("DATA", data);
    }
    DotStuffer stuffer;
    std::string out;
    for (std::size_t at = 0; at < message.body.size(); at += kWritePiece) {
        out.clear();
        stuffer.feed(message.body.substr(at, kWritePiece), out);
        SPOOLD_CHECK(write(out));
    }
    out.clear();
    stuffer.finish(out);
    SPOOLD_CHECK(write(out));
    SPOOLD_TRY(done, read_reply());
    if (done.code != 250) {
        return tl::unexpected(refused("the message", done));
    }
    return {};
}

void RelayClient::quit() {
    if (socket_.is_open()) {
        (void)command("QUIT");
        error_code ignored;
        socket_.close(ignored);
    }
}

} // namespace spoold::spoolctl
