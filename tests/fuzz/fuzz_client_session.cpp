// libFuzzer target: the drain's whole client conversation (ClientSession over ReplyParser,
// driven the way drain/connectors/connection.cpp drives it) against a hostile LMTP or SMTP
// server whose bytes the fuzzer writes. The end of the input is the server closing.
// Invariants: every message ends with one reply per recipient; a recipient counts as
// delivered only from a 2xx the server gave after our final dot (never from a RCPT reply
// or a failure); commands go out as CRLF lines; the conversation ends in bounded steps.
// Input: 8 control bytes (dialect, messages, recipients, splits), then the server's bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "drain/connectors/client_session.hpp"
#include "common/reply_parser.hpp"
#include "tests/fuzz/fuzz_support.hpp"

using namespace spoold;
using namespace spoold::drain;
using namespace spoold::drain::connectors;
using fuzz::check;

namespace {

// What connection.cpp hands io_failed() when the server closes or breaks the protocol.
const Reply kClosed = make_reply(451, "4.4.2", "mailstore closed the connection");
const Reply kProtocolError = make_reply(451, "4.4.0", "mailstore protocol error");

void check_commands(std::string_view out) {
    std::size_t pos = 0;
    while (pos < out.size()) {
        const auto crlf = out.find("\r\n", pos);
        check(crlf != std::string_view::npos, "a command without CRLF", out);
        const std::string_view line = out.substr(pos, crlf - pos);
        check(!line.empty(), "an empty command line", out);
        check(line.find_first_of("\r\n") == std::string_view::npos, "CR or LF inside a command",
              out);
        pos = crlf + 2;
    }
}

class Server {
public:
    Server(std::string_view bytes, fuzz::Choices& choices) : bytes_(bytes), choices_(choices) {}

    // The next reply, as Connection::read_reply gets it; false with `failure` set when the
    // server closed or sent garbage.
    bool read(Reply& reply, Reply& failure) {
        while (true) {
            auto parsed = parser_.next();
            if (!parsed) {
                failure = kProtocolError;
                return false;
            }
            if (*parsed) {
                reply = std::move(**parsed);
                return true;
            }
            if (pos_ == bytes_.size()) {
                failure = kClosed;
                return false;
            }
            const std::size_t n =
                std::min(bytes_.size() - pos_, 1 + choices_.below(choices_.one_in(4) ? 4096 : 32));
            parser_.feed(bytes_.substr(pos_, n));
            pos_ += n;
        }
    }
    bool has_buffered() const { return parser_.has_buffered(); }
    std::size_t consumed() const { return pos_; }

private:
    std::string_view bytes_;
    std::size_t pos_ = 0;
    fuzz::Choices& choices_;
    ReplyParser parser_;
};

DeliveryRequest make_request(fuzz::Choices& choices, std::uint64_t n) {
    DeliveryRequest request;
    request.id = QueueId{n + 1};
    request.mail_from = choices.one_in(4) ? "" : "sender@origin.example";
    const std::size_t recipients = 1 + choices.below(4);
    for (std::size_t i = 0; i < recipients; ++i) {
        request.recipients.push_back(
            choices.one_in(8) ? "δοκιμή@example.com" : "user" + std::to_string(i) + "@example.com");
    }
    request.size = choices.below(100000);
    request.smtputf8 = choices.one_in(4);
    request.eight_bit_mime = choices.one_in(2);
    return request;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto [choices, bytes] = fuzz::split_input(data, size);
    const Dialect dialect = choices.one_in(2) ? Dialect::kLmtp : Dialect::kSmtp;
    const std::uint64_t messages = 1 + choices.below(3);
    ClientSession session(dialect, "mx.example.com", choices.one_in(2));
    Server server(bytes, choices);

    DeliveryRequest request;
    std::uint64_t begun = 0;
    bool body_sent = false;
    std::size_t final_positive = 0; // 2xx replies read after our final dot, this message
    // Each step reads at least one byte or moves the session on; a few steps per message
    // and one per input byte bound any honest conversation.
    const std::size_t max_steps = 64 + 16 * messages + 4 * bytes.size();
    Next next = session.start();
    for (std::size_t step = 0;; ++step) {
        check(step < max_steps, "the conversation does not end");
        check_commands(session.take_output());
        if (next == Next::kRead) {
            Reply reply;
            Reply failure;
            if (!server.read(reply, failure)) {
                next = session.io_failed(failure);
                continue;
            }
            if (session.stage() == Stage::kFinal && reply.positive()) {
                ++final_positive;
            }
            next = session.on_reply(reply);
        } else if (next == Next::kStartTls) {
            if (server.has_buffered()) {
                break; // Connection::start_tls refuses bytes after "220" and closes
            }
            next = session.tls_established();
        } else if (next == Next::kSendBody) {
            check(!body_sent, "the body asked for twice");
            body_sent = true;
            next = session.body_sent();
        } else if (next == Next::kReady) {
            check(session.usable(), "ready but not usable");
            if (begun == messages) {
                next = session.quit();
                continue;
            }
            request = make_request(choices, begun++);
            body_sent = false;
            final_positive = 0;
            next = session.begin(request);
        } else if (next == Next::kDone) {
            const DeliveryResult result = session.take_result();
            check(result.per_recipient.size() == request.recipients.size(),
                  "not one reply per recipient");
            std::size_t delivered = 0;
            for (const auto& r : result.per_recipient) {
                check(r.code >= 200 && r.code <= 599, "a recipient without a reply", r.summary());
                delivered += r.positive() ? 1 : 0;
            }
            check(delivered == 0 || body_sent, "delivered without the body being sent");
            if (dialect == Dialect::kLmtp) {
                check(delivered <= final_positive, "more delivered than 2xx replies after the dot");
            } else {
                check(delivered == 0 || final_positive == 1, "delivered without a 2xx to the dot");
            }
            if (result.session_reply) {
                check(result.session_reply->code >= 400, "a positive session failure",
                      result.session_reply->summary());
            }
            if (!session.usable()) {
                break;
            }
            next = Next::kReady;
        } else {
            check(next == Next::kClose, "an unknown next step");
            check(!session.usable() || session.stage() == Stage::kClosed,
                  "closing a usable session");
            break;
        }
    }
    check(server.consumed() <= bytes.size(), "read past the input");
    return 0;
}
