#include <doctest/doctest.h>

#include "common/log.hpp"
#include "tests/unit/smtp/fake_intake.hpp"

using namespace spoold;
using namespace spoold::smtp;
using spoold::smtp::test::Harness;

namespace {

struct Quiet {
    Quiet() { log::set_level(log::Level::kError); }
} const quiet;

// The smuggled second message: if any variant ended DATA early, its MAIL/RCPT/DATA would
// get replies and a second message would be committed.
constexpr std::string_view kSmuggled = "MAIL FROM:<admin@bank.example>\r\n"
                                       "RCPT TO:<victim@example.com>\r\n"
                                       "DATA\r\n"
                                       "From: admin@bank.example\r\n\r\nsmuggled\r\n";

} // namespace

// SEC Consult, "SMTP Smuggling - Spoofing E-Mails Worldwide" (December 2023), and the
// follow-ups for Postfix, Sendmail, Exim, Cisco: end-of-data sequences that some
// receivers honour and others do not. Here every one of them is content, and since each
// one holds a bare CR or LF the message is refused whole at the real CRLF.CRLF.
TEST_CASE("published smuggling end-of-data variants never end a message early") {
    const char* variants[] = {
        "\n.\n", "\n.\r\n",     "\r.\r",       "\r\n.\n",   "\r\n.\r",       "\r.\r\n",
        "\n.\r", "\r\n.\r\r\n", "\r\n\r.\r\n", "\n\n.\n\n", "\r\r\n.\r\r\n", ".\n",
    };
    for (const char* v : variants) {
        CAPTURE(std::string_view(v));
        Harness h;
        REQUIRE(h.send("EHLO attacker.example\r\nMAIL FROM:<user@attacker.example>\r\n"
                       "RCPT TO:<user@example.com>\r\nDATA\r\n") ==
                "250 | 250 2.1.0 | 250 2.1.5 | 354");
        const std::string payload =
            std::string("Subject: first\r\n\r\nhello") + v + std::string(kSmuggled);
        CHECK(h.send(payload) == "");
        CHECK(h.session().in_data());
        CHECK(h.send(".\r\n") == "554 5.6.0");
        CHECK(h.intake.committed_count() == 0);
        CHECK(h.intake.messages.size() == 1);
        CHECK(h.send("NOOP\r\n") == "250 2.0.0");
    }
}

TEST_CASE("the same variants fed one byte at a time behave the same") {
    for (const char* v : {"\n.\n", "\r.\r", "\r\n.\n", "\r\n.\r", "\n.\r\n"}) {
        CAPTURE(std::string_view(v));
        Harness h;
        h.send(
            "EHLO a.example\r\nMAIL FROM:<u@a.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n");
        const std::string payload = std::string("hello") + v + std::string(kSmuggled) + "\r\n.\r\n";
        std::string replies;
        for (const char c : payload) {
            const std::string r = h.send(std::string_view(&c, 1));
            replies += r;
        }
        CHECK(replies == "554 5.6.0");
        CHECK(h.intake.committed_count() == 0);
    }
}

TEST_CASE("CRLF.CRLF ends DATA at every split point between writes") {
    const std::string body = "line\r\n..stuffed\r\n.\r\nNOOP\r\n";
    for (std::size_t cut = 1; cut < body.size(); ++cut) {
        CAPTURE(cut);
        Harness h;
        h.send(
            "EHLO a.example\r\nMAIL FROM:<u@a.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n");
        const std::string first = h.send(body.substr(0, cut));
        const std::string r = first + "/" + h.send(body.substr(cut));
        CHECK((r == "/250 2.0.0 | 250 2.0.0" || r == "250 2.0.0/250 2.0.0" ||
               r == "250 2.0.0 | 250 2.0.0/"));
        REQUIRE(h.intake.messages.size() == 1);
        CHECK(h.intake.messages[0].body.ends_with("\r\nline\r\n.stuffed\r\n"));
    }
}

TEST_CASE("other byte sequences around the dot are content, not an end") {
    // Sent after "DATA", followed by CRLF.CRLF; none of these end the message early.
    const std::pair<std::string, std::string> cases[] = {
        {"a\r\n..\r\nb", "a\r\n.\r\nb\r\n"},
        {"a\r\n. \r\nb", "a\r\n \r\nb\r\n"},
        {"a\r\n.x\r\nb", "a\r\nx\r\nb\r\n"},
        {"a.\r\nb", "a.\r\nb\r\n"},
    };
    for (const auto& [content, stored] : cases) {
        CAPTURE(content);
        Harness h;
        h.send(
            "EHLO a.example\r\nMAIL FROM:<u@a.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n");
        CHECK(h.send(content + "\r\n.\r\n") == "250 2.0.0");
        REQUIRE(h.intake.messages.size() == 1);
        CHECK(h.intake.messages[0].body.ends_with(";\r\n\tTue, 14 Nov 2023 22:13:20 +0000\r\n" +
                                                  stored));
    }
}

TEST_CASE("a NUL before the dot is no end of data either: the whole message is refused") {
    Harness h;
    h.send("EHLO a.example\r\nMAIL FROM:<u@a.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n");
    const std::string payload = std::string("a\r\n\0.\r\n", 6) + std::string(kSmuggled);
    CHECK(h.send(payload) == "");
    CHECK(h.session().in_data());
    CHECK(h.send(".\r\n") == "554 5.6.0");
    CHECK(h.intake.committed_count() == 0);
    CHECK(h.send("NOOP\r\n") == "250 2.0.0");
}

TEST_CASE("BDAT content with the smuggling sequences is refused at LAST too") {
    for (const char* v : {"\n.\n", "\r.\r", "\r\n.\n"}) {
        CAPTURE(std::string_view(v));
        Harness h;
        h.send("EHLO a.example\r\nMAIL FROM:<u@a.example>\r\nRCPT TO:<user@example.com>\r\n");
        const std::string content = std::string("hello") + v + "world\r\n";
        CHECK(h.send("BDAT " + std::to_string(content.size()) + " LAST\r\n" + content) ==
              "554 5.6.0");
        CHECK(h.intake.committed_count() == 0);
    }
}
