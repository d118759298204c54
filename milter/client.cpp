#include "milter/client.hpp"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/log.hpp"
#include "io/timed.hpp"

namespace spoold::milter {
namespace {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;
using Millis = std::chrono::milliseconds;
using Generic = asio::generic::stream_protocol;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t kReadSize = 64 * 1024;
// Unanswered steps queue at most this much before it is written: a body chunk's worth, so
// a large message streams to the filter as it arrives and memory stays bounded.
constexpr std::size_t kFlushAt = 64 * 1024;

struct StepFlags {
    std::uint32_t skip = 0;     // SMFIP_NO*: the filter does not want the step
    std::uint32_t no_reply = 0; // SMFIP_NR_*: it does not answer it
};

StepFlags flags_of(Step step) {
    switch (step) {
    case Step::kConnect: return {kNoConnect, kNoReplyConnect};
    case Step::kHelo: return {kNoHelo, kNoReplyHelo};
    case Step::kMail: return {kNoMail, kNoReplyMail};
    case Step::kRcpt: return {kNoRcpt, kNoReplyRcpt};
    case Step::kData: return {kNoData, kNoReplyData};
    case Step::kHeader: return {kNoHeaders, kNoReplyHeader};
    case Step::kEndOfHeaders: return {kNoEndOfHeaders, kNoReplyEndOfHeaders};
    case Step::kBody: return {kNoBody, kNoReplyBody};
    case Step::kEndOfMessage: return {};
    }
    return {};
}

Error timed_out(const policy::MilterConfig& c, std::string_view what) {
    return Error{ErrorKind::kTimeout, fmt::format("milter {}: {} timed out", c.name, what)};
}

Error write_failed(const policy::MilterConfig& c, const boost::system::error_code& ec) {
    return Error{ErrorKind::kIo, fmt::format("milter {}: write: {}", c.name, ec.message())};
}

} // namespace

Client::Client(const asio::any_io_executor& executor, policy::MilterConfig config)
    : config_(std::move(config)), socket_(executor), timer_(executor), buffer_(kReadSize) {}

bool Client::wants(Step step) const { return (negotiated_.protocol & flags_of(step).skip) == 0; }

bool Client::answers(Step step) const {
    return (negotiated_.protocol & flags_of(step).no_reply) == 0;
}

const std::string& Client::macros_wanted(MacroStage stage) const {
    return negotiated_.macros.at(static_cast<std::size_t>(stage));
}

Millis Client::timeout_for(Step step) const {
    switch (step) {
    case Step::kConnect: return config_.connect_timeout;
    case Step::kHelo:
    case Step::kMail:
    case Step::kRcpt:
    case Step::kData: return config_.command_timeout;
    case Step::kHeader:
    case Step::kEndOfHeaders:
    case Step::kBody:
    case Step::kEndOfMessage: return config_.content_timeout;
    }
    return config_.command_timeout;
}

asio::awaitable<Status> Client::connect() {
    timer_.expires_after(config_.connect_timeout);
    if (!config_.unix_socket.empty()) {
        const Generic::endpoint ep{asio::local::stream_protocol::endpoint(config_.unix_socket)};
        auto r = co_await (socket_.async_connect(ep, kUseTuple) || timer_.async_wait(kUseTuple));
        if (r.index() == 1) {
            co_return tl::unexpected(timed_out(config_, "connect"));
        }
        if (const auto& [ec] = std::get<0>(r); ec) {
            co_return fail(ErrorKind::kUnavailable,
                           fmt::format("milter {}: connect {}: {}", config_.name,
                                       config_.unix_socket, ec.message()));
        }
        co_return Status{};
    }
    asio::ip::tcp::resolver resolver(socket_.get_executor());
    auto resolved =
        co_await (resolver.async_resolve(config_.host, std::to_string(config_.port), kUseTuple) ||
                  timer_.async_wait(kUseTuple));
    if (resolved.index() == 1) {
        co_return tl::unexpected(timed_out(config_, "resolving " + config_.host));
    }
    const auto& [rec, results] = std::get<0>(resolved);
    if (rec) {
        co_return fail(
            ErrorKind::kUnavailable,
            fmt::format("milter {}: resolve {}: {}", config_.name, config_.host, rec.message()));
    }
    boost::system::error_code last = asio::error::host_not_found;
    for (const auto& entry : results) {
        boost::system::error_code ignored;
        socket_.close(ignored);
        const Generic::endpoint ep{entry.endpoint()};
        auto r = co_await (socket_.async_connect(ep, kUseTuple) || timer_.async_wait(kUseTuple));
        if (r.index() == 1) {
            co_return tl::unexpected(timed_out(config_, "connect"));
        }
        last = std::get<0>(std::get<0>(r));
        if (!last) {
            // Each step is one small write and a wait for the answer: without this,
            // Nagle's algorithm holds a write back for the ACK the filter delays.
            boost::system::error_code nodelay_ec;
            socket_.set_option(asio::ip::tcp::no_delay(true), nodelay_ec);
            co_return Status{};
        }
    }
    co_return fail(ErrorKind::kUnavailable,
                   fmt::format("milter {}: connect {}:{}: {}", config_.name, config_.host,
                               config_.port, last.message()));
}

asio::awaitable<Status> Client::open() {
    Status st = co_await connect();
    if (st) {
        // flush() first tries a write that must not block (it has no deadline).
        boost::system::error_code ignored;
        socket_.non_blocking(true, ignored);
        out_ = encode_option_negotiation(kProtocolVersion, kOfferedActions, kOfferedProtocol);
        timer_.expires_after(config_.connect_timeout);
        st = co_await flush();
    }
    if (!st) {
        close();
        co_return st;
    }
    auto packet = co_await read_packet();
    if (!packet) {
        close();
        co_return tl::unexpected(packet.error());
    }
    auto negotiated = decode_negotiation(*packet);
    if (!negotiated || negotiated->version < 2 || negotiated->version > kProtocolVersion) {
        close();
        co_return fail(
            ErrorKind::kProtocol,
            negotiated
                ? fmt::format("milter {}: protocol version {}", config_.name, negotiated->version)
                : fmt::format("milter {}: {}", config_.name, negotiated.error().message));
    }
    negotiated_ = std::move(*negotiated);
    if ((negotiated_.protocol & ~kOfferedProtocol) != 0 ||
        (negotiated_.actions & ~kOfferedActions) != 0) {
        // As Postfix does: steps we do not offer are not taken, actions we do not offer
        // are refused if the filter ever asks for them.
        log::debug("event=milter_negotiation milter={} protocol={:#x} actions={:#x} note={}",
                   config_.name, negotiated_.protocol, negotiated_.actions,
                   log::quote("flags beyond ours ignored"));
        negotiated_.protocol &= kOfferedProtocol;
        negotiated_.actions &= kOfferedActions;
    }
    co_return Status{};
}

asio::awaitable<Result<Answer>> Client::step(Step step, std::string packets) {
    const Millis timeout = timeout_for(step);
    out_ += packets;
    Answer answer;
    const bool answered = answers(step);
    if (!answered && out_.size() < kFlushAt) {
        co_return answer; // a continue; written with the next answered step
    }
    // One deadline for the step's write and its reply (a progress reply restarts it).
    timer_.expires_after(timeout);
    if (const Status st = co_await flush(); !st) {
        co_return tl::unexpected(st.error());
    }
    if (!answered) {
        co_return answer;
    }
    for (bool first = true;; first = false) {
        if (!first) {
            timer_.expires_after(timeout);
        }
        auto packet = co_await read_packet();
        if (!packet) {
            co_return tl::unexpected(packet.error());
        }
        auto response = decode_response(*packet);
        if (!response) {
            close();
            co_return fail(ErrorKind::kProtocol,
                           fmt::format("milter {}: {}", config_.name, response.error().message));
        }
        if (response->final()) {
            answer.final = std::move(*response);
            co_return answer;
        }
        if (response->kind == Response::Kind::kProgress) {
            continue;
        }
        if (step != Step::kEndOfMessage || response->kind == Response::Kind::kReplaceBody) {
            close();
            co_return fail(
                ErrorKind::kProtocol,
                fmt::format("milter {}: modification request '{}' {}", config_.name, packet->code,
                            step == Step::kEndOfMessage ? "not offered (body replacement)"
                                                        : "before the end of the message"));
        }
        answer.requests.push_back(std::move(*response));
    }
}

asio::awaitable<Status> Client::send(std::string packets, Millis timeout) {
    out_ += packets;
    timer_.expires_after(timeout);
    co_return co_await flush();
}

asio::awaitable<Status> Client::flush() {
    if (!socket_.is_open()) {
        out_.clear();
        co_return fail(ErrorKind::kIo, fmt::format("milter {}: not connected", config_.name));
    }
    if (out_.empty()) {
        co_return Status{};
    }
    // A step's packets almost always fit the socket's buffer: written at once, without
    // arming the timer; only what does not fit waits, within the deadline.
    boost::system::error_code now_ec;
    const std::size_t now = socket_.write_some(asio::buffer(out_), now_ec);
    if (!now_ec && now == out_.size()) {
        out_.clear();
        co_return Status{};
    }
    if (now_ec && now_ec != asio::error::would_block && now_ec != asio::error::try_again) {
        close();
        co_return tl::unexpected(write_failed(config_, now_ec));
    }
    out_.erase(0, now);
    const io::IoResult w = co_await io::write_all(&socket_, &timer_, asio::buffer(out_));
    out_.clear();
    if (w.timed_out) {
        close();
        co_return tl::unexpected(timed_out(config_, "write"));
    }
    if (w.ec) {
        close();
        co_return tl::unexpected(write_failed(config_, w.ec));
    }
    co_return Status{};
}

asio::awaitable<Result<Packet>> Client::read_packet() {
    for (;;) {
        auto next = reader_.next();
        if (!next) {
            close();
            co_return fail(ErrorKind::kProtocol,
                           fmt::format("milter {}: {}", config_.name, next.error().message));
        }
        if (*next) {
            co_return std::move(**next);
        }
        if (!socket_.is_open()) {
            co_return fail(ErrorKind::kIo, fmt::format("milter {}: not connected", config_.name));
        }
        const io::IoResult r = co_await io::read_some(&socket_, &timer_, asio::buffer(buffer_));
        if (r.timed_out) {
            close();
            co_return tl::unexpected(timed_out(config_, "reply"));
        }
        if (r.ec) {
            close();
            co_return fail(ErrorKind::kIo,
                           fmt::format("milter {}: read: {}", config_.name,
                                       r.ec == asio::error::eof ? "connection closed by the filter"
                                                                : r.ec.message()));
        }
        reader_.feed(std::string_view(buffer_.data(), r.bytes));
    }
}

void Client::close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
    out_.clear();
}

} // namespace spoold::milter
