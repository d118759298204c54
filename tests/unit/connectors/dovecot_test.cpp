#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <cstdlib>
#include <filesystem>
#include <unistd.h>

#include "drain/connectors/wire_mailstore.hpp"
#include "tests/unit/connectors/connector_test_support.hpp"

using namespace spoold;
using namespace spoold::drain;
using namespace spoold::drain::connectors;
using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

const std::string kScript = std::string(SPOOLD_SOURCE_DIR) + "/tests/support/dovecot-lmtp.sh";

bool dovecot_installed() { return std::system("command -v dovecot >/dev/null 2>&1") == 0; }

std::uint16_t free_port() {
    asio::io_context ctx;
    asio::ip::tcp::acceptor a(ctx, {asio::ip::make_address("127.0.0.1"), 0});
    return a.local_endpoint().port();
}

// Starts the test Dovecot in `dir` and stops it (bounded, by the script) on scope exit.
class Dovecot {
public:
    Dovecot(const fs::path& dir, std::uint16_t port, const std::string& users) : dir_(dir) {
        const std::string cmd =
            kScript + " start " + dir.string() + " " + std::to_string(port) + " " + users;
        started_ = std::system(cmd.c_str()) == 0;
    }
    ~Dovecot() { (void)std::system((kScript + " stop " + dir_.string()).c_str()); }
    Dovecot(const Dovecot&) = delete;
    Dovecot& operator=(const Dovecot&) = delete;
    bool started() const { return started_; }

private:
    fs::path dir_;
    bool started_ = false;
};

std::vector<std::string> messages_in(const fs::path& maildir_new) {
    std::vector<std::string> out;
    if (fs::exists(maildir_new)) {
        for (const auto& e : fs::directory_iterator(maildir_new)) {
            out.push_back(test::read_file(e.path()));
        }
    }
    return out;
}

} // namespace

TEST_CASE("a real Dovecot LMTP takes two messages for two users over one connection") {
    if (!dovecot_installed()) {
        MESSAGE("dovecot is not installed; skipped");
        return;
    }
    test::TempDir dir;
    const std::uint16_t port = free_port();
    Dovecot dovecot(dir.path(), port, "alice@example.test bob@example.test full@example.test=1K");
    REQUIRE(dovecot.started());

    asio::io_context ctx;
    policy::MailstoreConfig config;
    config.name = "dovecot";
    config.kind = policy::MailstoreKind::kLmtp;
    config.port = port;
    config.connect_timeout = 5s;
    config.command_timeout = 10s;
    config.data_timeout = 10s;
    LmtpMailstore store(ctx.get_executor(), config, {});
    CHECK(test::run(ctx, store.probe()));

    const std::string first = "Subject: first\r\n\r\nHello Alice and Bob.\r\n.dotted line\r\n";
    const std::string big(4000, 'x'); // over the 1K quota of full@
    const std::string second = "Subject: second\r\n\r\n" + big + "\r\n";
    const auto r1 = test::run(
        ctx, store.deliver(test::make_request(
                 {"alice@example.test", "bob@example.test", "nobody@example.test"}, first)));
    const auto r2 = test::run(ctx, store.deliver(test::make_request(
                                       {"alice@example.test", "full@example.test"}, second)));
    CHECK_FALSE(r1.mailstore_trouble);
    CHECK_FALSE(r2.mailstore_trouble);
    REQUIRE(r1.per_recipient.size() == 3);
    CHECK(r1.per_recipient[0].code == 250);
    CHECK(r1.per_recipient[1].code == 250);
    CHECK(r1.per_recipient[2].summary().starts_with("550 5.1.1"));
    REQUIRE(r2.per_recipient.size() == 2);
    CHECK(r2.per_recipient[0].code == 250);
    CHECK(r2.per_recipient[1].summary().starts_with("452 4.2.2"));
    CHECK(store.connections_opened() == 2); // one for the probe, one for both messages

    const auto alice = messages_in(dir.path() / "mail" / "example.test" / "alice" / "new");
    const auto bob = messages_in(dir.path() / "mail" / "example.test" / "bob" / "new");
    REQUIRE(alice.size() == 2);
    REQUIRE(bob.size() == 1);
    const auto has = [](const std::vector<std::string>& msgs, const std::string& text) {
        return std::any_of(msgs.begin(), msgs.end(), [&text](const std::string& m) {
            return m.find(text) != std::string::npos;
        });
    };
    CHECK(has(alice, "Hello Alice and Bob.\n.dotted line\n")); // Dovecot stores LF, un-stuffed
    CHECK(has(alice, big));
    CHECK(has(bob, "Subject: first"));
    CHECK(messages_in(dir.path() / "mail" / "example.test" / "full" / "new").empty());
}

TEST_CASE("a real Dovecot that cannot reach a mailbox's storage is mailstore trouble") {
    if (!dovecot_installed() || ::geteuid() != 0) {
        MESSAGE("needs dovecot and root (the mail user then differs from us); skipped");
        return;
    }
    test::TempDir dir;
    const std::uint16_t port = free_port();
    Dovecot dovecot(dir.path(), port, "alice@example.test");
    REQUIRE(dovecot.started());
    // Storage the mail user cannot enter: what Dovecot sees when the array is gone.
    const fs::path box = dir.path() / "mail" / "example.test" / "alice";
    fs::create_directories(box);
    fs::permissions(dir.path() / "mail" / "example.test", fs::perms::owner_all);

    asio::io_context ctx;
    policy::MailstoreConfig config;
    config.kind = policy::MailstoreKind::kLmtp;
    config.port = port;
    config.connect_timeout = 5s;
    config.command_timeout = 10s;
    config.data_timeout = 10s;
    LmtpMailstore store(ctx.get_executor(), config, {});
    const auto res =
        test::run(ctx, store.deliver(test::make_request({"alice@example.test"}, "x\r\n")));
    REQUIRE(res.per_recipient.size() == 1);
    CHECK(res.per_recipient[0].code == 451); // Dovecot: "451 4.2.0 Internal error occurred"
    CHECK(res.mailstore_trouble);
}
