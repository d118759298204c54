#include <doctest/doctest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include <unistd.h>

#include "common/log.hpp"
#include "smtp/server.hpp"

using namespace spoold;
using namespace spoold::smtp;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kDeadline = std::chrono::seconds(10);

// Polls `cond` until it holds or the deadline passes (no sleeps).
template <typename Cond> bool eventually(Cond cond) {
    const auto until = std::chrono::steady_clock::now() + kDeadline;
    while (std::chrono::steady_clock::now() < until) {
        if (cond()) {
            return true;
        }
        std::this_thread::yield();
    }
    return cond();
}

// A thread-safe in-memory intake. Appends complete inline; commits complete inline, or
// are held until release() runs them on another thread (callbacks from a foreign
// thread are what the spool's writer does).
class LoopbackIntake final : public Intake {
public:
    struct Stored {
        MessageInfo info;
        std::string body;
    };

    Status admit() override { return {}; }
    RecipientVerdict check_recipient(const std::string& address) override {
        return address.ends_with("@example.com") ? RecipientVerdict::kAccept
                                                 : RecipientVerdict::kRelayDenied;
    }
    Result<std::unique_ptr<IncomingMessage>> begin() override {
        return std::unique_ptr<IncomingMessage>(
            std::make_unique<Message>(*this, QueueId{++next_id_}));
    }

    void release() {
        std::vector<std::function<void()>> held;
        {
            const std::lock_guard lock(mutex);
            held.swap(held_);
        }
        std::thread([held = std::move(held)] {
            for (const auto& f : held) {
                f();
            }
        }).join();
    }

    std::mutex mutex;
    bool hold_commits = false;
    std::optional<Error> fail_commit;
    std::atomic<int> commits_started{0};
    std::atomic<int> rollbacks{0};
    std::vector<Stored> stored;

private:
    class Message final : public IncomingMessage {
    public:
        Message(LoopbackIntake& owner, QueueId id) : owner_(owner), id_(id) {}
        QueueId id() const override { return id_; }
        void append(std::string data, std::function<void(Status)> done) override {
            body_ += data;
            done(Status{});
        }
        void commit(MessageInfo info, std::string head,
                    std::function<void(Result<CommitInfo>)> done) override {
            auto finish = [this, info = std::move(info), head = std::move(head),
                           done = std::move(done)]() mutable {
                std::optional<Error> failure;
                {
                    const std::lock_guard lock(owner_.mutex);
                    failure = owner_.fail_commit;
                    if (!failure) {
                        owner_.stored.push_back(Stored{std::move(info), head + body_});
                    }
                }
                if (failure) {
                    done(tl::unexpected(*failure));
                } else {
                    done(CommitInfo{"normal"});
                }
            };
            {
                // Counted only once held: a test that sees the count and releases must find
                // this commit among the held ones.
                const std::lock_guard lock(owner_.mutex);
                if (owner_.hold_commits) {
                    owner_.held_.emplace_back(std::move(finish));
                    ++owner_.commits_started;
                    return;
                }
            }
            ++owner_.commits_started;
            finish();
        }
        void rollback() override { ++owner_.rollbacks; }

    private:
        LoopbackIntake& owner_;
        QueueId id_;
        std::string body_;
    };

    std::vector<std::function<void()>> held_;
    std::atomic<std::uint64_t> next_id_{1000};
};

// A blocking-style client whose every wait is bounded by kDeadline.
class Client {
public:
    explicit Client(const tcp::endpoint& ep) : socket_(io_) {
        boost::system::error_code ec;
        socket_.connect(ep, ec);
        REQUIRE_FALSE(ec);
    }

    void send(const std::string& text) {
        boost::system::error_code ec;
        if (tls_) {
            asio::write(*tls_, asio::buffer(text), ec);
        } else {
            asio::write(socket_, asio::buffer(text), ec);
        }
        REQUIRE_FALSE(ec);
    }

    // One whole reply (all its lines), or "EOF" / "TIMEOUT".
    std::string reply() {
        for (;;) {
            if (auto r = take_reply()) {
                return *r;
            }
            std::array<char, 4096> chunk{};
            std::optional<std::size_t> got;
            boost::system::error_code error;
            auto handler = [&](const boost::system::error_code& ec, std::size_t n) {
                error = ec;
                got = n;
            };
            if (tls_) {
                tls_->async_read_some(asio::buffer(chunk), handler);
            } else {
                socket_.async_read_some(asio::buffer(chunk), handler);
            }
            io_.restart();
            io_.run_for(kDeadline);
            if (!got) {
                socket_.cancel();
                io_.restart();
                io_.run();
                return "TIMEOUT";
            }
            if (error) {
                // Inside TLS a close without close_notify is a truncation, not an end.
                return error == asio::ssl::error::stream_truncated ? "TRUNCATED" : "EOF";
            }
            buffer_.append(chunk.data(), *got);
        }
    }

    std::string code() { return reply().substr(0, 9); }

    bool nothing_pending() { return buffer_.empty() && socket_.available() == 0; }

    void start_tls() {
        ctx_.set_verify_mode(asio::ssl::verify_none);
        tls_.emplace(socket_, ctx_);
        boost::system::error_code ec;
        tls_->handshake(asio::ssl::stream_base::client, ec);
        REQUIRE_FALSE(ec);
    }

private:
    std::optional<std::string> take_reply() {
        std::size_t pos = 0;
        while (true) {
            const auto nl = buffer_.find("\r\n", pos);
            if (nl == std::string::npos) {
                return std::nullopt;
            }
            const bool last = nl - pos >= 4 && buffer_[pos + 3] == ' ';
            pos = nl + 2;
            if (last) {
                std::string r = buffer_.substr(0, pos);
                buffer_.erase(0, pos);
                return r;
            }
        }
    }

    asio::io_context io_;
    tcp::socket socket_;
    asio::ssl::context ctx_{asio::ssl::context::tls_client};
    std::optional<asio::ssl::stream<tcp::socket&>> tls_;
    std::string buffer_;
};

// The server on its own thread, over the loopback intake.
struct Fixture {
    explicit Fixture(policy::Config cfg = config()) : server(io, cfg, intake) {
        log::set_level(log::Level::kError);
        auto eps = server.start();
        REQUIRE(eps.has_value());
        REQUIRE(eps->size() == 1);
        endpoint = eps->front();
        runner = std::thread([this] { io.run(); });
    }
    ~Fixture() {
        std::atomic<bool> stopped{false};
        server.stop(std::chrono::seconds(2), [&stopped] { stopped = true; });
        CHECK(eventually([&] { return stopped.load(); }));
        work.reset();
        io.stop();
        runner.join();
    }

    static policy::Config config() {
        policy::Config c;
        c.hostname = "mx.example.com";
        c.listeners = {policy::ListenerConfig{"127.0.0.1", 0, "", ""}};
        return c;
    }

    LoopbackIntake intake;
    asio::io_context io;
    asio::executor_work_guard<asio::io_context::executor_type> work{io.get_executor()};
    Server server;
    tcp::endpoint endpoint;
    std::thread runner;
};

void send_envelope(Client& c) {
    c.send("EHLO client.example\r\n");
    REQUIRE(c.reply().starts_with("250-mx.example.com"));
    c.send("MAIL FROM:<sender@origin.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n");
    CHECK(c.code() == "250 2.1.0");
    CHECK(c.code() == "250 2.1.5");
    CHECK(c.code().starts_with("354"));
}

} // namespace

TEST_CASE("loopback: 250 comes only after the intake's commit completes, from another thread") {
    Fixture f;
    f.intake.hold_commits = true;
    Client c(f.endpoint);
    CHECK(c.code().starts_with("220 mx.ex"));
    send_envelope(c);
    c.send("Subject: loopback\r\n\r\nhello\r\n.\r\n");
    REQUIRE(eventually([&] { return f.intake.commits_started.load() == 1; }));
    CHECK(c.nothing_pending()); // the commit is held: no reply yet
    {
        const std::lock_guard lock(f.intake.mutex);
        CHECK(f.intake.stored.empty());
    }
    f.intake.release();
    CHECK(c.code() == "250 2.0.0");
    {
        const std::lock_guard lock(f.intake.mutex);
        REQUIRE(f.intake.stored.size() == 1);
        CHECK(
            f.intake.stored[0].body.starts_with("Received: from client.example ([127.0.0.1])\r\n"));
        CHECK(f.intake.stored[0].body.ends_with("\r\nSubject: loopback\r\n\r\nhello\r\n"));
        CHECK(f.intake.stored[0].info.client_addr == "127.0.0.1");
    }
    c.send("QUIT\r\n");
    CHECK(c.code() == "221 2.0.0");
    CHECK(c.reply() == "EOF");
}

TEST_CASE("loopback: a failed commit gives 451 4.3.0 and no 250") {
    Fixture f;
    f.intake.fail_commit = Error{ErrorKind::kIo, "disk on fire"};
    Client c(f.endpoint);
    c.reply();
    send_envelope(c);
    c.send("hello\r\n.\r\nNOOP\r\n");
    CHECK(c.code() == "451 4.3.0");
    CHECK(c.code() == "250 2.0.0"); // the NOOP: the session goes on
    const std::lock_guard lock(f.intake.mutex);
    CHECK(f.intake.stored.empty());
}

TEST_CASE("loopback: a pipelined batch, BDAT, and a 1 MiB message") {
    Fixture f;
    Client c(f.endpoint);
    c.reply();
    c.send("EHLO client.example\r\nMAIL FROM:<a@origin.example>\r\nRCPT TO:<user@example.com>\r\n"
           "RCPT TO:<x@elsewhere.example>\r\nBDAT 5 LAST\r\nabc\r\n");
    CHECK(c.reply().starts_with("250-"));
    CHECK(c.code() == "250 2.1.0");
    CHECK(c.code() == "250 2.1.5");
    CHECK(c.code() == "550 5.7.1");
    CHECK(c.code() == "250 2.0.0");
    c.send("MAIL FROM:<a@origin.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n");
    c.code();
    c.code();
    c.code();
    const std::string line = std::string(78, 'x') + "\r\n";
    std::string body;
    while (body.size() < (1U << 20U)) {
        body += line;
    }
    c.send(body + ".\r\n");
    CHECK(c.code() == "250 2.0.0");
    const std::lock_guard lock(f.intake.mutex);
    REQUIRE(f.intake.stored.size() == 2);
    CHECK(f.intake.stored[0].body.ends_with("\r\nabc\r\n"));
    CHECK(f.intake.stored[1].body.ends_with(body));
}

TEST_CASE("loopback: connections over the per-client limit get 421 4.7.0 at connect") {
    auto cfg = Fixture::config();
    cfg.limits.max_sessions_per_client = 1;
    Fixture f(cfg);
    Client first(f.endpoint);
    CHECK(first.code().starts_with("220"));
    Client second(f.endpoint);
    CHECK(second.code() == "421 4.7.0");
    CHECK(second.reply() == "EOF");
    first.send("QUIT\r\n");
    CHECK(first.code().starts_with("221 "));
    CHECK(eventually([&] { return f.server.session_count() == 0; }));
    Client third(f.endpoint);
    CHECK(third.code().starts_with("220"));
}

TEST_CASE("loopback: an idle client times out with 421 4.4.2") {
    auto cfg = Fixture::config();
    cfg.limits.command_timeout = std::chrono::milliseconds(200);
    Fixture f(cfg);
    Client c(f.endpoint);
    c.reply();
    c.send("EHLO client.example\r\n");
    c.reply();
    CHECK(c.code() == "421 4.4.2");
    CHECK(c.reply() == "EOF");
}

TEST_CASE("loopback: stop() says 421 4.3.2 to idle sessions and then reports done") {
    Fixture f;
    std::atomic<bool> done{false};
    {
        Client c(f.endpoint);
        c.reply();
        // A grace longer than the server's close linger (kCloseTimeout, 5 s) and the wait
        // below: only the session's end can report done, never the grace running out.
        f.server.stop(std::chrono::seconds(60), [&done] { done = true; });
        CHECK(c.reply().starts_with("421 mx.example.com")); // before EHLO: no enhanced code
        CHECK(c.reply() == "EOF");                          // then our FIN
    } // the client closes, as a client does after 421: the server's linger ends on its FIN
    CHECK(eventually([&] { return done.load(); }));
    CHECK(f.server.session_count() == 0);
}

// A throwaway certificate in its own directory, removed at the end of the test.
struct TestCertificate {
    TestCertificate() {
        std::filesystem::create_directories(dir);
        const std::string cmd =
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
            "-subj /CN=mx.example.com -keyout " +
            key + " -out " + cert + " >/dev/null 2>&1";
        REQUIRE(std::system(cmd.c_str()) == 0);
    }
    ~TestCertificate() { std::filesystem::remove_all(dir); }
    policy::Config config() const {
        auto cfg = Fixture::config();
        cfg.listeners[0].tls_certificate = cert;
        cfg.listeners[0].tls_key = key;
        return cfg;
    }
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / ("spoold-smtp-tls-" + std::to_string(::getpid()));
    const std::string cert = (dir / "cert.pem").string();
    const std::string key = (dir / "key.pem").string();
};

TEST_CASE("loopback: STARTTLS with a throwaway certificate, then EHLO again inside TLS") {
    const TestCertificate certificate;
    const auto cfg = certificate.config();
    {
        Fixture f(cfg);
        Client c(f.endpoint);
        c.reply();
        c.send("EHLO client.example\r\n");
        CHECK(c.reply().find("250 STARTTLS\r\n") != std::string::npos);
        // The injected plaintext after STARTTLS must not run inside TLS.
        c.send("STARTTLS\r\nMAIL FROM:<evil@origin.example>\r\n");
        CHECK(c.code() == "220 2.0.0");
        c.start_tls();
        c.send("RCPT TO:<user@example.com>\r\n");
        CHECK(c.code() == "503 Need "); // the injected MAIL never ran (and no EHLO yet: no 5.5.1)
        c.send("EHLO client.example\r\n");
        CHECK(c.reply().find("STARTTLS") == std::string::npos);
        c.send("MAIL FROM:<a@origin.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n");
        CHECK(c.code() == "250 2.1.0");
        CHECK(c.code() == "250 2.1.5");
        c.code();
        c.send("secret\r\n.\r\n");
        CHECK(c.code() == "250 2.0.0");
        const std::lock_guard lock(f.intake.mutex);
        REQUIRE(f.intake.stored.size() == 1);
        CHECK(f.intake.stored[0].info.tls.starts_with("version=TLSv1."));
        CHECK(f.intake.stored[0].body.find("with ESMTPS id") != std::string::npos);
    }
}

TEST_CASE("loopback: a TLS session ends with close_notify on QUIT, timeout and error") {
    const TestCertificate certificate;
    auto cfg = certificate.config();
    cfg.limits.command_timeout = std::chrono::milliseconds(300);
    cfg.limits.max_errors = 2;
    Fixture f(cfg);
    auto start_tls = [&](Client& c) {
        c.reply();
        c.send("EHLO client.example\r\n");
        c.reply();
        c.send("STARTTLS\r\n");
        REQUIRE(c.code() == "220 2.0.0");
        c.start_tls();
    };
    SUBCASE("QUIT right after the handshake") {
        Client c(f.endpoint);
        start_tls(c);
        c.send("QUIT\r\n");
        CHECK(c.reply().starts_with("221 ")); // no EHLO inside TLS yet: no enhanced code
        CHECK(c.reply() == "EOF");
    }
    SUBCASE("the command timeout") {
        Client c(f.endpoint);
        start_tls(c);
        CHECK(c.reply().starts_with("421 mx.example.com Error: timeout"));
        CHECK(c.reply() == "EOF");
    }
    SUBCASE("too many errors") {
        Client c(f.endpoint);
        start_tls(c);
        c.send("FOO\r\nBAR\r\n");
        CHECK(c.reply().starts_with("500 Command")); // no EHLO inside TLS yet: no enhanced code
        CHECK(c.reply().starts_with("500 Command"));
        CHECK(c.code() == "421 mx.ex");
        CHECK(c.reply() == "EOF");
    }
}

TEST_CASE("start() refuses a listener whose certificate cannot be read") {
    auto cfg = Fixture::config();
    cfg.listeners[0].tls_certificate = "/nonexistent/cert.pem";
    cfg.listeners[0].tls_key = "/nonexistent/key.pem";
    LoopbackIntake intake;
    asio::io_context io;
    Server server(io, cfg, intake);
    const auto r = server.start();
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().kind == ErrorKind::kConfig);
}
