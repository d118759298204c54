#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "milter/chain.hpp"
#include "milter/codec.hpp"
#include "tests/support/milter_wire.hpp"

using namespace spoold;
using namespace spoold::milter;
using smtp::FilterAction;
using smtp::FilterVerdict;
using spoold::test::be32;
using spoold::test::milter_packet;
using spoold::test::z;

namespace {

namespace asio = boost::asio;

// The filter timeouts: far above what a step takes on a loaded machine, so only a filter
// that does not answer reaches one...
constexpr std::chrono::seconds kStepTimeout{10};
// ...except the hanging filter's content timeout, which the test waits for.
constexpr std::chrono::milliseconds kHangTimeout{200};
// Above every timeout: a verdict that has not come by then is a failure.
constexpr std::chrono::seconds kDeadline{3 * kStepTimeout};

// Answers the option negotiation with every action we offer and no step skipped.
std::string negotiation(std::uint32_t actions = kOfferedActions, std::uint32_t protocol = 0) {
    return milter_packet('O', be32(kProtocolVersion) + be32(actions) + be32(protocol));
}

// A filter on 127.0.0.1, port 0, serving one connection from a script: for each packet
// it receives, the bytes it writes back (empty: it does not answer).
class ScriptedFilter {
public:
    using Script = std::function<std::string(const Packet&)>;

    explicit ScriptedFilter(Script script) : script_(std::move(script)) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(listen_fd_ >= 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
        REQUIRE(::listen(listen_fd_, 1) == 0);
        socklen_t len = sizeof addr;
        REQUIRE(::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ScriptedFilter(const ScriptedFilter&) = delete;
    ScriptedFilter& operator=(const ScriptedFilter&) = delete;
    ~ScriptedFilter() {
        ::shutdown(listen_fd_, SHUT_RDWR); // ends an accept that never got a client
        thread_.join();
        ::close(listen_fd_);
    }

    std::uint16_t port() const { return port_; }
    // The command codes received so far, in order.
    std::string received() {
        const std::lock_guard lock(mutex_);
        return received_;
    }

private:
    void serve() {
        const int fd = ::accept(listen_fd_, nullptr, nullptr);
        if (fd < 0) {
            return;
        }
        PacketReader reader;
        std::array<char, 4096> buf{};
        for (;;) {
            const ssize_t n = ::read(fd, buf.data(), buf.size());
            if (n <= 0) {
                break; // the chain closed the connection
            }
            reader.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)));
            for (auto p = reader.next(); p && *p; p = reader.next()) {
                {
                    const std::lock_guard lock(mutex_);
                    received_ += (*p)->code;
                }
                const std::string out = script_(**p);
                if (!out.empty() && ::write(fd, out.data(), out.size()) < 0) {
                    break;
                }
            }
        }
        ::close(fd);
    }

    Script script_;
    int listen_fd_ = -1;
    std::uint16_t port_ = 0;
    std::thread thread_;
    std::mutex mutex_;
    std::string received_;
};

policy::MilterConfig config_for(std::uint16_t port, policy::MilterFailure on_failure,
                                std::chrono::milliseconds content_timeout = kStepTimeout) {
    policy::MilterConfig c;
    c.name = "test";
    c.address = "inet:127.0.0.1:" + std::to_string(port);
    c.host = "127.0.0.1";
    c.port = port;
    c.connect_timeout = kStepTimeout;
    c.command_timeout = kStepTimeout;
    c.content_timeout = content_timeout;
    c.on_failure = on_failure;
    return c;
}

// One connection's chain, driven on a private io_context.
class Harness {
public:
    explicit Harness(policy::MilterConfig config)
        : filters_(io_, ChainSettings{"mx.test", "mx.test", "1.0", {std::move(config)}}),
          session_(filters_.open()) {
        REQUIRE(session_ != nullptr);
    }
    ~Harness() {
        session_->close();
        work_.reset();
        io_.run_for(kDeadline); // returns once the goodbye to the filter is done
    }

    FilterVerdict ask(smtp::FilterEvent event) {
        std::optional<FilterVerdict> got;
        session_->ask(std::move(event), [&](FilterVerdict v) { got = std::move(v); });
        const auto deadline = std::chrono::steady_clock::now() + kDeadline;
        while (!got && std::chrono::steady_clock::now() < deadline) {
            io_.run_one_for(std::chrono::milliseconds(100));
        }
        REQUIRE_MESSAGE(got.has_value(), "no verdict within the deadline");
        return *got;
    }

    bool awaits_reply(const smtp::FilterEvent& event) const {
        return session_->awaits_reply(event);
    }

    // The stages of one message up to the first verdict that is not a continue;
    // `awaited` gets, for each stage asked, whether the chain said it awaits a reply.
    FilterVerdict message(std::string body = "hello\r\n", std::string* awaited = nullptr) {
        const smtp::FilterEvent stages[] = {
            smtp::FilterConnect{"192.0.2.1", 4000, "127.0.0.1", 25},
            smtp::FilterHelo{"client.test", "", "", 0},
            smtp::FilterMail{"s@remote.test", {}},
            smtp::FilterRcpt{"alice@example.com", {}},
            smtp::FilterData{},
            smtp::FilterHeaders{{{"Subject", "hi"}}},
            smtp::FilterBody{std::move(body)},
            smtp::FilterEnd{},
        };
        FilterVerdict v;
        for (const auto& stage : stages) {
            if (awaited != nullptr) {
                *awaited += awaits_reply(stage) ? 'y' : 'n';
            }
            v = ask(stage);
            if (v.action != FilterAction::kContinue) {
                break;
            }
        }
        return v;
    }

private:
    asio::io_context io_;
    asio::executor_work_guard<asio::io_context::executor_type> work_{io_.get_executor()};
    MilterFilters filters_;
    std::unique_ptr<smtp::FilterSession> session_;
};

} // namespace

TEST_CASE("a filter's requests at the end of the message reach the verdict, decoded") {
    ScriptedFilter filter([](const Packet& p) -> std::string {
        switch (p.code) {
        case 'O': return negotiation();
        case 'D': return {}; // macros are not answered
        case 'E':
            return milter_packet('h', z("X-Added") + z("1")) +
                   milter_packet('i', be32(0) + z("X-First") + z("2")) +
                   milter_packet('m', be32(1) + z("Subject") + z("[tagged] hi")) +
                   milter_packet('p') + milter_packet('q', z("looks odd")) +
                   milter_packet('+', z("<added@b.test>")) +
                   milter_packet('2', z("<param@b.test>") + z("NOTIFY=NEVER")) +
                   milter_packet('-', z("<alice@example.com>")) +
                   milter_packet('e', z("<new@remote.test>")) + milter_packet('a');
        default: return milter_packet('c');
        }
    });
    Harness h(config_for(filter.port(), policy::MilterFailure::kTempFail));
    std::string awaited;
    const FilterVerdict v = h.message("hello\r\n", &awaited);
    CHECK(awaited == "yyyyyyyy"); // it answers every step
    CHECK(v.action == FilterAction::kAccept);
    using HC = smtp::HeaderChange;
    REQUIRE(v.headers.size() == 3);
    CHECK(v.headers[0].kind == HC::Kind::kAdd);
    CHECK(v.headers[0].name == "X-Added");
    CHECK(v.headers[1].kind == HC::Kind::kInsert);
    CHECK(v.headers[1].index == 0);
    CHECK(v.headers[1].name == "X-First");
    CHECK(v.headers[2].kind == HC::Kind::kChange);
    CHECK(v.headers[2].index == 1);
    CHECK(v.headers[2].value == "[tagged] hi");
    using EC = smtp::EnvelopeChange;
    REQUIRE(v.envelope.size() == 4);
    CHECK(v.envelope[0].kind == EC::Kind::kAddRecipient);
    CHECK(v.envelope[0].address == "added@b.test");
    CHECK(v.envelope[1].address == "param@b.test");
    CHECK(v.envelope[2].kind == EC::Kind::kRemoveRecipient);
    CHECK(v.envelope[2].address == "alice@example.com");
    CHECK(v.envelope[3].kind == EC::Kind::kSetSender);
    CHECK(v.envelope[3].address == "new@remote.test");
    CHECK(v.quarantine == "test: looks odd");
    // Every step was shown to the filter, each after its macros where it has any.
    CHECK(filter.received() == "ODCDHDMDRDTLDNBDE");
}

TEST_CASE("a filter that answers only the end of the message is shown every step in order") {
    // rspamd's negotiation: no reply to any step but the end of the message.
    constexpr std::uint32_t kNoReplyButEnd = kNoReplyConnect | kNoReplyHelo | kNoReplyMail |
                                             kNoReplyRcpt | kNoReplyData | kNoReplyHeader |
                                             kNoReplyEndOfHeaders | kNoReplyBody;
    // Three full body packets and a short one: the unanswered steps are written in
    // bounded pieces as they queue up, not held until the end.
    const std::string body(3 * kMaxBodyChunk + 10, 'x');
    std::mutex mutex;
    std::string body_seen;
    std::size_t largest = 0;
    ScriptedFilter filter([&](const Packet& p) -> std::string {
        switch (p.code) {
        case 'O': return negotiation(kOfferedActions, kNoReplyButEnd);
        case 'B': {
            const std::lock_guard lock(mutex);
            body_seen += p.data;
            largest = std::max(largest, p.data.size());
            return {};
        }
        case 'E': return milter_packet('h', z("X-Seen") + z("yes")) + milter_packet('c');
        default: return {};
        }
    });
    Harness h(config_for(filter.port(), policy::MilterFailure::kTempFail));
    std::string awaited;
    const FilterVerdict v = h.message(body, &awaited);
    // Connect (the connection is opened) and the end of the message wait for the filter;
    // the rest are answered at once, so the session need not flush its replies first.
    CHECK(awaited == "ynnnnnny");
    CHECK(v.action == FilterAction::kContinue);
    REQUIRE(v.headers.size() == 1);
    CHECK(v.headers[0].name == "X-Seen");
    CHECK(filter.received() == "ODCDHDMDRDTLDNBBBBDE");
    const std::lock_guard lock(mutex);
    CHECK(body_seen == body);
    CHECK(largest == kMaxBodyChunk);
}

TEST_CASE("a filter's refusals are the verdict, with its own reply when it gave one") {
    struct Row {
        std::string reply;
        FilterAction action;
        int code; // 0: the session's default reply
    };
    const Row rows[] = {
        {milter_packet('r'), FilterAction::kReject, 0},
        {milter_packet('t'), FilterAction::kTempFail, 0},
        {milter_packet('d'), FilterAction::kDiscard, 0},
        {milter_packet('y', z("554 5.7.1 spam")), FilterAction::kReject, 554},
        {milter_packet('y', z("452 4.3.1 later")), FilterAction::kTempFail, 452},
        {milter_packet('4'), FilterAction::kTempFail, 421},
    };
    for (const Row& row : rows) {
        CAPTURE(row.reply);
        ScriptedFilter filter([&](const Packet& p) -> std::string {
            if (p.code == 'O') {
                return negotiation();
            }
            if (p.code == 'D') {
                return {};
            }
            return p.code == 'E' ? row.reply : milter_packet('c');
        });
        Harness h(config_for(filter.port(), policy::MilterFailure::kTempFail));
        const FilterVerdict v = h.message();
        CHECK(v.action == row.action);
        CHECK(v.filter == "test");
        CHECK(v.reply.has_value() == (row.code != 0));
        if (v.reply) {
            CHECK(v.reply->code == row.code);
        }
    }
}

TEST_CASE("a filter that breaks the protocol or hangs fails into its on_failure action") {
    struct Row {
        std::string what;
        char at; // the command whose answer goes wrong
        std::string answer;
        std::uint32_t actions;
        std::string reason;
    };
    const Row rows[] = {
        {"an oversized packet", 'C', be32(0xFFFFFFFFU), kOfferedActions,
         "milter packet of length 4294967295"},
        {"a packet of length 0", 'M', be32(0), kOfferedActions, "milter packet of length 0"},
        {"an unknown reply", 'H', milter_packet('Z'), kOfferedActions,
         "malformed milter reply 'Z': unknown reply"},
        {"a reply code that is not 4xx or 5xx", 'R', milter_packet('y', z("250 2.0.0 fine")),
         kOfferedActions, "is not 4xx or 5xx"},
        {"a request it did not negotiate", 'E',
         milter_packet('h', z("X-A") + z("1")) + milter_packet('a'), 0,
         "a request it did not negotiate"},
        {"a body replacement (never offered)", 'E', milter_packet('b', "new") + milter_packet('a'),
         kOfferedActions, "modification request 'b' not offered (body replacement)"},
        {"no answer within the content timeout", 'E', "", kOfferedActions, ""},
    };
    for (const auto on_failure :
         {policy::MilterFailure::kTempFail, policy::MilterFailure::kAccept}) {
        for (const Row& row : rows) {
            const bool tempfail = on_failure == policy::MilterFailure::kTempFail;
            CAPTURE(row.what);
            CAPTURE(tempfail);
            ScriptedFilter filter([&](const Packet& p) -> std::string {
                if (p.code == 'O') {
                    return negotiation(row.actions);
                }
                if (p.code == 'D') {
                    return {};
                }
                return p.code == row.at ? row.answer : milter_packet('c');
            });
            Harness h(config_for(filter.port(), on_failure,
                                 row.answer.empty() ? kHangTimeout : kStepTimeout));
            const FilterVerdict v = h.message();
            if (tempfail) {
                CHECK(v.action == FilterAction::kTempFail);
                CHECK(v.filter == "test");
                CHECK_FALSE(v.reply.has_value()); // the session's 451 4.7.1
                CHECK(v.reason.find(row.reason) != std::string::npos);
                // It stays failed for the rest of the connection.
                const FilterVerdict next = h.ask(smtp::FilterMail{"s@remote.test", {}});
                CHECK(next.action == FilterAction::kTempFail);
                CHECK(next.reason == "failed earlier in this session");
            } else {
                // Left out: the message goes on as if the filter were not configured.
                CHECK(v.action == FilterAction::kAccept);
                CHECK(v.headers.empty());
                CHECK(h.ask(smtp::FilterMail{"s@remote.test", {}}).action == FilterAction::kAccept);
            }
        }
    }
}

TEST_CASE("a filter nobody listens on fails at connect into its on_failure action") {
    std::uint16_t port = 0;
    {
        ScriptedFilter gone([](const Packet&) { return std::string{}; });
        port = gone.port();
    } // closed: connecting to it is refused
    Harness tempfail(config_for(port, policy::MilterFailure::kTempFail));
    const FilterVerdict v = tempfail.ask(smtp::FilterConnect{"192.0.2.1", 4000, "127.0.0.1", 25});
    CHECK(v.action == FilterAction::kTempFail);
    CHECK_FALSE(v.reason.empty());
    Harness accept(config_for(port, policy::MilterFailure::kAccept));
    CHECK(accept.ask(smtp::FilterConnect{"192.0.2.1", 4000, "127.0.0.1", 25}).action ==
          FilterAction::kAccept);
}
