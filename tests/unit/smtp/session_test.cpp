#include <doctest/doctest.h>

#include "common/address.hpp"
#include "common/log.hpp"
#include "tests/unit/smtp/fake_intake.hpp"

using namespace spoold;
using namespace spoold::smtp;
using spoold::smtp::test::Harness;

namespace {

struct Quiet {
    Quiet() { log::set_level(log::Level::kError); }
} const quiet;

// EHLO, MAIL and one RCPT: the usual start of a test.
void open_transaction(Harness& h, const std::string& rcpt = "user@example.com") {
    REQUIRE(h.send("EHLO client.example\r\n") == "250");
    REQUIRE(h.send("MAIL FROM:<sender@origin.example>\r\n") == "250 2.1.0");
    REQUIRE(h.send("RCPT TO:<" + rcpt + ">\r\n") == "250 2.1.5");
}

// The body as the client meant it: the stored body minus our Received: header.
std::string client_body(const test::StoredMessage& m) {
    // The header ends at the first line that does not start with a tab.
    std::size_t pos = 0;
    while (true) {
        const auto nl = m.body.find("\r\n", pos);
        REQUIRE(nl != std::string::npos);
        pos = nl + 2;
        if (pos >= m.body.size() || m.body[pos] != '\t') {
            return m.body.substr(pos);
        }
    }
}

} // namespace

TEST_CASE("the greeting is 220 without an enhanced code") {
    Harness h;
    CHECK(h.wire == "220 mx.example.com ESMTP spoold\r\n");
}

TEST_CASE("EHLO advertises the extensions; STARTTLS only when offered and not yet active") {
    Harness plain;
    plain.send("EHLO client.example\r\n");
    REQUIRE(plain.replies.size() == 1);
    const auto& lines = plain.replies[0].lines;
    for (const char* ext : {"PIPELINING", "SIZE 52428800", "8BITMIME", "SMTPUTF8", "CHUNKING",
                            "DSN", "ENHANCEDSTATUSCODES"}) {
        CAPTURE(ext);
        CHECK(std::find(lines.begin(), lines.end(), ext) != lines.end());
    }
    CHECK(std::find(lines.begin(), lines.end(), "STARTTLS") == lines.end());

    auto settings = Harness::default_settings();
    settings.starttls_offered = true;
    Harness tls(settings);
    tls.send("EHLO client.example\r\n");
    CHECK(tls.wire.find("250 STARTTLS\r\n") != std::string::npos);
}

TEST_CASE("commands and their replies, one line at a time") {
    struct Row {
        const char* input;
        const char* reply;
    };
    // Each row runs in a fresh session that has said EHLO.
    const Row rows[] = {
        {"RCPT TO:<user@example.com>", "503 5.5.1"},
        {"DATA", "503 5.5.1"},
        {"BDAT 0 LAST", "503 5.5.1"},
        {"NOOP", "250 2.0.0"},
        {"noop", "250 2.0.0"},
        {"RSET", "250 2.0.0"},
        {"RSET now", "501 5.5.4"},
        {"VRFY user", "252 2.5.0"},
        {"VRFY", "501 5.5.4"},
        {"EXPN list", "502 5.5.1"},
        {"HELP", "214 2.0.0"},
        {"QUIT", "221 2.0.0"},
        {"FOO bar", "500 5.5.1"},
        {"AUTH PLAIN AAAA", "500 5.5.1"},
        {"STARTTLS", "502 5.5.1"},
        {"EHLO", "501 5.5.4"},
        {"MAIL <a@b.example>", "501 5.5.4"},
        {"MAIL FROM:a@b.example", "501 5.1.7"},
        {"MAIL FROM:<a@@b.example>", "501 5.1.7"},
        {"MAIL FROM:<>", "250 2.1.0"},
        {"MAIL FROM: <a@b.example>", "250 2.1.0"},
        {"mail from:<a@b.example>", "250 2.1.0"},
        {"MAIL FROM:<a@b.example> SIZE=1000", "250 2.1.0"},
        {"MAIL FROM:<a@b.example> SIZE=99999999999", "552 5.3.4"},
        {"MAIL FROM:<a@b.example> SIZE=12x", "501 5.5.4"},
        {"MAIL FROM:<a@b.example> SIZE=1 SIZE=2", "501 5.5.4"},
        {"MAIL FROM:<a@b.example> BODY=8BITMIME", "250 2.1.0"},
        {"MAIL FROM:<a@b.example> BODY=7BIT", "250 2.1.0"},
        {"MAIL FROM:<a@b.example> BODY=BINARYMIME", "555 5.5.4"},
        {"MAIL FROM:<a@b.example> RET=HDRS ENVID=QQ314159", "250 2.1.0"},
        {"MAIL FROM:<a@b.example> RET=SOME", "501 5.5.4"},
        {"MAIL FROM:<a@b.example> ENVID=bad+zz", "501 5.5.4"},
        {"MAIL FROM:<a@b.example> AUTH=<>", "555 5.5.4"},
        {"MAIL FROM:<a@b.example> XFOO=1", "555 5.5.4"},
        {"MAIL FROM:<a@b.example> SMTPUTF8=yes", "501 5.5.4"},
        {"MAIL FROM:<j\xc3\xb6rg@b.example>", "553 5.6.7"},
        {"MAIL FROM:<j\xc3\xb6rg@b.example> SMTPUTF8", "250 2.1.0"},
        {"MAIL FROM:<\"quoted local\"@b.example>", "250 2.1.0"},
        {"MAIL FROM:<a@[192.0.2.1]>", "250 2.1.0"},
        {"MAIL FROM:<a@b.example>\x01", "500 5.5.2"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.input);
        Harness h;
        REQUIRE(h.send("EHLO client.example\r\n") == "250");
        CHECK(h.send(std::string(row.input) + "\r\n") == row.reply);
    }
}

TEST_CASE("sequence errors inside a transaction") {
    Harness h;
    CHECK(h.send("MAIL FROM:<a@b.example>\r\n") == "503"); // no HELO yet, so no enhanced code
    CHECK(h.send("EHLO client.example\r\n") == "250");
    CHECK(h.send("MAIL FROM:<a@b.example>\r\n") == "250 2.1.0");
    CHECK(h.send("MAIL FROM:<a@b.example>\r\n") == "503 5.5.1");
    CHECK(h.send("DATA\r\n") == "554 5.5.1"); // no valid recipients
    CHECK(h.send("RCPT TO:<user@example.com>\r\n") == "250 2.1.5");
    CHECK(h.send("DATA now\r\n") == "501 5.5.4");
    CHECK(h.send("RSET\r\n") == "250 2.0.0");
    CHECK(h.send("RCPT TO:<user@example.com>\r\n") == "503 5.5.1");
    CHECK(h.intake.messages.empty());
}

TEST_CASE("recipient verdicts map to their replies") {
    struct Row {
        const char* rcpt;
        const char* reply;
    };
    const Row rows[] = {
        {"RCPT TO:<user@example.com>", "250 2.1.5"},
        {"RCPT TO:<user@other.example>", "550 5.7.1"},
        {"RCPT TO:<unknown@example.com>", "550 5.1.1"},
        {"RCPT TO:<temp@example.com>", "451 4.3.0"},
        {"RCPT TO:<Postmaster>", "250 2.1.5"},
        {"RCPT TO:<bad address@example.com>", "501 5.1.3"},
        {"RCPT TO:user@example.com", "501 5.1.3"},
        {"RCPT <user@example.com>", "501 5.5.4"},
        {"RCPT TO:<j\xc3\xb6rg@example.com>", "553 5.6.7"},
        {"RCPT TO:<user@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user@example.com",
         "250 2.1.5"},
        {"RCPT TO:<user@example.com> NOTIFY=NEVER,SUCCESS", "501 5.5.4"},
        {"RCPT TO:<user@example.com> NOTIFY=SUCCESS NOTIFY=DELAY", "501 5.5.4"},
        {"RCPT TO:<user@example.com> ORCPT=user@example.com", "501 5.5.4"},
        {"RCPT TO:<user@example.com> XFOO", "555 5.5.4"},
        {"RCPT TO:<@relay.example:user@example.com>", "250 2.1.5"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.rcpt);
        Harness h;
        h.send("EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n");
        CHECK(h.send(std::string(row.rcpt) + "\r\n") == row.reply);
    }
}

TEST_CASE("a message is accepted with 250 only after its commit completes") {
    Harness h;
    h.auto_complete = false;
    open_transaction(h);
    CHECK(h.send("DATA\r\n") == "354");
    // Pipelined commands after the final dot wait for the commit.
    CHECK(h.send("Subject: hi\r\n\r\nHello\r\n.\r\nMAIL FROM:<a@b.example>\r\n") == "");
    CHECK_FALSE(h.session().wants_input());
    CHECK(h.session().busy());
    REQUIRE(h.intake.messages.size() == 1);
    CHECK(h.complete_one() == ""); // the append
    CHECK_FALSE(h.intake.messages[0].committed);
    const std::string after_commit = h.complete_one();
    CHECK(after_commit == "250 2.0.0 | 250 2.1.0");
    CHECK(h.intake.messages[0].committed);
    CHECK(h.replies[0].lines[0] == "OK queued as " + h.intake.messages[0].id.text());
    CHECK(client_body(h.intake.messages[0]) == "Subject: hi\r\n\r\nHello\r\n");
    CHECK(h.session().messages_accepted() == 1);
}

TEST_CASE("the envelope reaches the intake with its DSN and SMTPUTF8 facts") {
    Harness h;
    h.send("EHLO client.example\r\n");
    CHECK(h.send("MAIL FROM:<s\xc3\xa9nder@b.example> SMTPUTF8 BODY=8BITMIME RET=HDRS "
                 "ENVID=id+2B1\r\n") == "250 2.1.0");
    CHECK(h.send("RCPT TO:<user@example.com> NOTIFY=FAILURE,DELAY "
                 "ORCPT=rfc822;user+2Bx@example.com\r\n") == "250 2.1.5");
    CHECK(h.send("RCPT TO:<other@example.com>\r\n") == "250 2.1.5");
    CHECK(h.send("RCPT TO:<other@example.com>\r\n") == "250 2.1.5"); // duplicate: kept once
    CHECK(h.send("DATA\r\n") == "354");
    CHECK(h.send("x\r\n.\r\n") == "250 2.0.0");
    REQUIRE(h.intake.messages.size() == 1);
    const MessageInfo& info = h.intake.messages[0].info;
    CHECK(info.mail_from == "s\xc3\xa9nder@b.example");
    CHECK(info.mail_params == "SMTPUTF8 BODY=8BITMIME RET=HDRS ENVID=id+2B1");
    CHECK(info.smtputf8);
    CHECK(info.eight_bit_mime);
    CHECK(info.ret == "HDRS");
    CHECK(info.envid == "id+1");
    CHECK(info.helo == "client.example");
    CHECK(info.client_addr == "192.0.2.7");
    CHECK(info.tls.empty());
    REQUIRE(info.recipients.size() == 2);
    CHECK(info.recipients[0].address == "user@example.com");
    CHECK(info.recipients[0].notify == (address::kNotifyFailure | address::kNotifyDelay));
    CHECK(info.recipients[0].orcpt == "rfc822;user+x@example.com");
    CHECK(info.recipients[1].notify == 0);
    CHECK(h.intake.messages[0].body.find("with UTF8SMTP id") != std::string::npos);
}

TEST_CASE("the Received: header comes first, with queue id, protocol, recipient and date") {
    Harness h;
    open_transaction(h);
    REQUIRE(h.send("DATA\r\n") == "354");
    h.send("body\r\n.\r\n");
    REQUIRE(h.intake.messages.size() == 1);
    const auto& m = h.intake.messages[0];
    const std::string expected = "Received: from client.example ([192.0.2.7])\r\n"
                                 "\tby mx.example.com (spoold) with ESMTP id " +
                                 m.id.text() +
                                 "\r\n\tfor <user@example.com>;\r\n"
                                 "\tTue, 14 Nov 2023 22:13:20 +0000\r\n";
    CHECK(m.body == expected + "body\r\n");
}

TEST_CASE("local trouble gives 4xx and never 250: admission, begin, append, commit") {
    SUBCASE("spool above its watermark at MAIL and at RCPT") {
        Harness h;
        h.send("EHLO client.example\r\n");
        h.intake.spool_full = true;
        CHECK(h.send("MAIL FROM:<a@b.example>\r\n") == "452 4.3.1");
        h.intake.spool_full = false;
        CHECK(h.send("MAIL FROM:<a@b.example>\r\n") == "250 2.1.0");
        h.intake.spool_full = true;
        CHECK(h.send("RCPT TO:<user@example.com>\r\n") == "452 4.3.1");
    }
    SUBCASE("begin fails at DATA") {
        Harness h;
        open_transaction(h);
        h.intake.begin_fails = true;
        CHECK(h.send("DATA\r\n") == "451 4.3.0");
    }
    SUBCASE("commit fails: 451, no 250, the session goes on") {
        Harness h;
        open_transaction(h);
        h.intake.fail_commit = Error{ErrorKind::kIo, "fsync failed"};
        CHECK(h.send("DATA\r\n") == "354");
        CHECK(h.send("hello\r\n.\r\n") == "451 4.3.0");
        CHECK(h.intake.committed_count() == 0);
        CHECK(h.send("MAIL FROM:<a@b.example>\r\n") == "250 2.1.0");
    }
    SUBCASE("commit fails with a full spool: 452") {
        Harness h;
        open_transaction(h);
        h.intake.fail_commit = Error{ErrorKind::kSpoolFull, "map full"};
        CHECK(h.send("DATA\r\n") == "354");
        CHECK(h.send("hello\r\n.\r\n") == "452 4.3.1");
    }
    SUBCASE("an append fails: the end of data gets the local error, nothing is committed") {
        Harness h;
        open_transaction(h);
        h.intake.fail_append = Error{ErrorKind::kDiskFull, "ENOSPC"};
        CHECK(h.send("DATA\r\n") == "354");
        CHECK(h.send("hello\r\n.\r\n") == "452 4.3.1");
        CHECK(h.intake.committed_count() == 0);
        CHECK(h.intake.messages[0].rolled_back);
    }
}

TEST_CASE("more recipients than the limit get 452 4.5.3") {
    auto settings = Harness::default_settings();
    settings.limits.max_recipients = 2;
    Harness h(settings);
    h.send("EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n");
    CHECK(h.send("RCPT TO:<u1@example.com>\r\nRCPT TO:<u2@example.com>\r\nRCPT "
                 "TO:<u3@example.com>\r\n") == "250 2.1.5 | 250 2.1.5 | 452 4.5.3");
}

TEST_CASE("a message over the size limit gets 552 5.3.4 at its end and is not kept") {
    auto settings = Harness::default_settings();
    settings.limits.max_message_size = 100;
    Harness h(settings);
    open_transaction(h);
    CHECK(h.send("DATA\r\n") == "354");
    CHECK(h.send(std::string(200, 'x') + "\r\n") == "");
    CHECK(h.send(".\r\n") == "552 5.3.4");
    CHECK(h.intake.committed_count() == 0);
    CHECK(h.intake.messages[0].rolled_back);
    CHECK(h.send("NOOP\r\n") == "250 2.0.0");
}

TEST_CASE("PIPELINING: a whole transaction in one write gets its replies in order") {
    const std::string envelope =
        "EHLO client.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u1@example.com>\r\n"
        "RCPT TO:<nobody@elsewhere.example>\r\nRCPT TO:<u2@example.com>\r\nDATA\r\n";
    const std::string content = "Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n";
    // Up to DATA in one write (RFC 2920), the content after the 354.
    Harness h;
    CHECK(h.send(envelope) == "250 | 250 2.1.0 | 250 2.1.5 | 550 5.7.1 | 250 2.1.5 | 354");
    CHECK(h.send(content) == "250 2.0.0 | 221 2.0.0");
    CHECK(h.closed);
    REQUIRE(h.intake.messages.size() == 1);
    CHECK(h.intake.messages[0].info.recipients.size() == 2);
    // With refuse_early_data off, even the content in the same write.
    auto settings = Harness::default_settings();
    settings.limits.refuse_early_data = false;
    Harness all(settings);
    CHECK(all.send(envelope + content) ==
          "250 | 250 2.1.0 | 250 2.1.5 | 550 5.7.1 | 250 2.1.5 | 354 | 250 2.0.0 | 221 2.0.0");
    CHECK(all.closed);
    REQUIRE(all.intake.messages.size() == 1);
    CHECK(all.intake.messages[0].info.recipients.size() == 2);
}

TEST_CASE("dot-stuffing is undone exactly") {
    Harness h;
    open_transaction(h);
    h.send("DATA\r\n");
    h.send("..leading dot\r\n..\r\n...\r\nmiddle . dot\r\nend.\r\n. space\r\n.\r\n");
    REQUIRE(h.intake.messages.size() == 1);
    CHECK(client_body(h.intake.messages[0]) ==
          ".leading dot\r\n.\r\n..\r\nmiddle . dot\r\nend.\r\n space\r\n");
}

TEST_CASE("an empty message is just the end marker") {
    Harness h;
    open_transaction(h);
    CHECK(h.send("DATA\r\n") == "354");
    CHECK(h.send(".\r\n") == "250 2.0.0");
    CHECK(client_body(h.intake.messages[0]).empty());
}

TEST_CASE("command lines over the limit get 500 5.5.2 and the session goes on") {
    auto settings = Harness::default_settings();
    settings.limits.max_line_length = 512;
    Harness h(settings);
    h.send("EHLO client.example\r\n");
    CHECK(h.send("NOOP " + std::string(600, 'a') + "\r\n") == "500 5.5.2");
    CHECK(h.send("NOOP\r\n") == "250 2.0.0");
    // A long line arriving in pieces is refused once and skipped to its end.
    CHECK(h.send(std::string(400, 'b')) == "");
    CHECK(h.send(std::string(400, 'b')) == "500 5.5.2");
    CHECK(h.send(std::string(4000, 'b')) == "");
    CHECK(h.send("b\r\nNOOP\r\n") == "250 2.0.0");
    // A line of exactly 512 octets including CRLF is fine.
    CHECK(h.send("NOOP " + std::string(505, 'a') + "\r\n") == "250 2.0.0");
}

TEST_CASE("text lines in DATA longer than 1000 octets are accepted unchanged") {
    Harness h;
    open_transaction(h);
    const std::string line(5000, 'z');
    CHECK(h.send("DATA\r\n") == "354");
    CHECK(h.send(line + "\r\n.\r\n") == "250 2.0.0");
    CHECK(client_body(h.intake.messages[0]) == line + "\r\n");
}

TEST_CASE("after max_errors client errors the session ends with 421 4.7.0") {
    auto settings = Harness::default_settings();
    settings.limits.max_errors = 3;
    Harness h(settings);
    h.send("EHLO client.example\r\n");
    CHECK(h.send("FOO\r\nBAR\r\n") == "500 5.5.1 | 500 5.5.1");
    CHECK_FALSE(h.closed);
    CHECK(h.send("RCPT TO:<x@example.com>\r\nNOOP\r\n") == "503 5.5.1 | 421 4.7.0");
    CHECK(h.closed);
    CHECK(h.send("NOOP\r\n") == "");
}

TEST_CASE("HELO: plain SMTP, no enhanced codes, no ESMTP parameters") {
    Harness h;
    CHECK(h.send("HELO client.example\r\n") == "250");
    CHECK(h.send("MAIL FROM:<a@b.example> SIZE=10\r\n") == "555");
    CHECK(h.send("MAIL FROM:<a@b.example>\r\n") == "250");
    CHECK(h.send("RCPT TO:<user@example.com>\r\n") == "250");
    CHECK(h.send("BDAT 3 LAST\r\nabc") == "503");
    CHECK(h.send("DATA\r\n") == "354");
    CHECK(h.send("x\r\n.\r\n") == "250");
    CHECK(h.intake.messages[0].body.find("with SMTP id") != std::string::npos);
}

TEST_CASE("BDAT: a CRLF split between two chunks is one line end") {
    Harness h;
    open_transaction(h);
    CHECK(h.send("BDAT 7\r\nline 1\r") == "250 2.0.0");
    CHECK(h.send("BDAT 3\r\n\nab") == "250 2.0.0");
    CHECK(h.send("BDAT 0 LAST\r\n") == "250 2.0.0");
    CHECK(client_body(h.intake.messages[0]) == "line 1\r\nab\r\n");
}

TEST_CASE("BDAT: a bare LF in any chunk refuses the message at LAST with 554 5.6.0") {
    Harness h;
    open_transaction(h);
    CHECK(h.send("BDAT 10\r\n.dot kept\n") == "250 2.0.0");
    CHECK(h.send("BDAT 8 LAST\r\n\r\nlast\r\nNOOP\r\n") == "554 5.6.0 | 250 2.0.0");
    CHECK(h.intake.committed_count() == 0);
    CHECK(h.intake.messages[0].rolled_back);
}

TEST_CASE("BDAT LAST commits what the chunks carried, byte for byte") {
    Harness h;
    open_transaction(h);
    CHECK(h.send("BDAT 8\r\nline 1\r\n") == "250 2.0.0");
    CHECK(h.send("BDAT 11\r\n.dot kept\r\n") == "250 2.0.0");
    h.auto_complete = false;
    CHECK(h.send("BDAT 6 LAST\r\nlast\r\nNOOP\r\n") == "");
    CHECK(h.complete_one() == "");                      // append
    CHECK(h.complete_one() == "250 2.0.0 | 250 2.0.0"); // commit, then the pipelined NOOP
    CHECK(client_body(h.intake.messages[0]) == "line 1\r\n.dot kept\r\nlast\r\n");
}

TEST_CASE("BDAT 0 LAST ends a chunked message; a missing final CRLF is added") {
    Harness h;
    open_transaction(h);
    CHECK(h.send("BDAT 5\r\nabcde") == "250 2.0.0");
    CHECK(h.send("BDAT 0 LAST\r\n") == "250 2.0.0");
    CHECK(client_body(h.intake.messages[0]) == "abcde\r\n");
}

TEST_CASE("BDAT refusals still read and drop the chunk") {
    Harness h;
    h.send("EHLO client.example\r\n");
    CHECK(h.send("BDAT 12 LAST\r\nRSET\r\nQUIT\r\n") == "503 5.5.1");
    CHECK_FALSE(h.closed);
    CHECK(h.send("NOOP\r\n") == "250 2.0.0");
    CHECK(h.send("BDAT x\r\n") == "501 5.5.4");
}

TEST_CASE("BDAT and DATA do not mix in one transaction") {
    Harness h;
    open_transaction(h);
    CHECK(h.send("BDAT 3\r\nabc") == "250 2.0.0");
    CHECK(h.send("DATA\r\n") == "503 5.5.1");
}

TEST_CASE("BDAT over the size limit gets 552 at the chunk that crosses it") {
    auto settings = Harness::default_settings();
    settings.limits.max_message_size = 10;
    Harness h(settings);
    open_transaction(h);
    CHECK(h.send("BDAT 8\r\n12345678") == "250 2.0.0");
    CHECK(h.send("BDAT 8\r\n12345678") == "552 5.3.4");
    CHECK(h.send("BDAT 1 LAST\r\nx") == "503 5.5.1"); // the transaction is gone
    CHECK(h.intake.committed_count() == 0);
    CHECK(h.intake.messages[0].rolled_back);
}

TEST_CASE("STARTTLS: 220, the handshake, then a fresh session that must EHLO again") {
    auto settings = Harness::default_settings();
    settings.starttls_offered = true;
    Harness h(settings);
    h.send("EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n");
    CHECK(h.send("STARTTLS\r\n") == "220 2.0.0");
    CHECK(h.tls_starts == 1);
    CHECK_FALSE(h.session().wants_input());
    h.replies.clear();
    auto after = h.session().on_tls_established(TlsInfo{"TLSv1.3", "TLS_AES_256_GCM_SHA384", 256});
    CHECK(after.empty());
    CHECK(h.send("MAIL FROM:<a@b.example>\r\n") == "503"); // HELO/EHLO first; state reset
    h.send("EHLO client.example\r\n");
    const auto& lines = h.replies[0].lines;
    CHECK(std::find(lines.begin(), lines.end(), "STARTTLS") == lines.end()); // not offered twice
    CHECK(h.send("STARTTLS\r\n") == "502 5.5.1");
    CHECK(h.send("MAIL FROM:<a@b.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n") ==
          "250 2.1.0 | 250 2.1.5 | 354");
    CHECK(h.send("x\r\n.\r\n") == "250 2.0.0");
    const auto& m = h.intake.messages[0];
    CHECK(m.body.find("(using version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256)") !=
          std::string::npos);
    CHECK(m.body.find("with ESMTPS id") != std::string::npos);
    CHECK(m.info.tls == "version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256");
}

TEST_CASE("STARTTLS command injection: plaintext pipelined after STARTTLS is discarded") {
    auto settings = Harness::default_settings();
    settings.starttls_offered = true;
    Harness h(settings);
    h.send("EHLO client.example\r\n");
    CHECK(h.send("STARTTLS\r\nMAIL FROM:<evil@b.example>\r\nRCPT TO:<user@example.com>\r\n") ==
          "220 2.0.0");
    h.session().on_tls_established(TlsInfo{"TLSv1.3", "TLS_AES_128_GCM_SHA256", 128});
    CHECK(h.send("EHLO client.example\r\n") == "250");
    CHECK(h.send("RCPT TO:<user@example.com>\r\n") == "503 5.5.1"); // the injected MAIL never ran
}

TEST_CASE("a timeout says 421 4.4.2, closes and drops the message") {
    Harness h;
    open_transaction(h);
    REQUIRE(h.send("DATA\r\n") == "354");
    h.send("partial");
    CHECK(h.session().in_data());
    h.replies.clear();
    for (auto& a : h.session().on_timeout()) {
        if (auto* r = std::get_if<Reply>(&a)) {
            CHECK(r->summary().starts_with("421 4.4.2"));
        } else {
            CHECK(std::holds_alternative<Close>(a));
        }
    }
    CHECK(h.intake.messages[0].rolled_back);
}

TEST_CASE("shutdown says 421 4.3.2 and closes") {
    Harness h;
    h.send("EHLO client.example\r\n");
    const auto actions = h.session().on_shutdown();
    REQUIRE(actions.size() == 2);
    CHECK(std::get<Reply>(actions[0]).summary().starts_with("421 4.3.2"));
    CHECK(std::holds_alternative<Close>(actions[1]));
}

TEST_CASE("a big message streams in bounded appends, one in flight") {
    Harness h;
    h.auto_complete = false;
    open_transaction(h);
    CHECK(h.send("DATA\r\n") == "354");
    const std::string line = std::string(998, 'q') + "\r\n";
    std::string chunk;
    for (int i = 0; i < 64; ++i) {
        chunk += line; // 64,000 bytes per write
    }
    std::size_t written = 0;
    const std::size_t total = 5 * 1024 * 1024;
    int rounds = 0;
    while (written < total) {
        REQUIRE(++rounds < 100000);
        if (h.session().wants_input()) {
            h.send(chunk);
            written += chunk.size();
        } else {
            REQUIRE(h.intake.pending.size() == 1); // never two appends in flight
            h.complete_one();
        }
    }
    h.send(".\r\n");
    while (!h.intake.pending.empty()) {
        h.complete_one();
    }
    CHECK(h.codes() == "250 2.0.0");
    const auto& m = h.intake.messages[0];
    CHECK(m.committed);
    CHECK(m.largest_append <= 2 * kAppendChunk);
    CHECK(client_body(m).size() == written);
}

TEST_CASE("closing the connection mid-message rolls it back") {
    Harness h;
    open_transaction(h);
    REQUIRE(h.send("DATA\r\n") == "354");
    h.send("abc\r\n");
    h.session().on_disconnect();
    CHECK(h.intake.messages[0].rolled_back);
    CHECK(h.intake.committed_count() == 0);
}

TEST_CASE("message data sent before the 354 ends the session with 554 5.5.0 (refuse_early_data)") {
    struct Row {
        const char* after_data; // pipelined behind "DATA\r\n" in the same write
    };
    for (const Row row : {Row{"Subject: x\r\n\r\nbody\r\n.\r\n"}, Row{"x"}, Row{"QUIT\r\n"}}) {
        CAPTURE(row.after_data);
        Harness h;
        open_transaction(h);
        CHECK(h.send(std::string("DATA\r\n") + row.after_data) == "554 5.5.0");
        CHECK(h.closed);
        CHECK(h.intake.committed_count() == 0);
        CHECK_FALSE(h.session().wants_input());
    }
    // Pipelining up to DATA is fine (RFC 2920: DATA ends the group).
    Harness ok;
    CHECK(ok.send("EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<user@example.com>\r\n"
                  "DATA\r\n") == "250 | 250 2.1.0 | 250 2.1.5 | 354");
    CHECK(ok.send("x\r\n.\r\n") == "250 2.0.0");
    // Turned off, the early data is the message.
    auto settings = Harness::default_settings();
    settings.limits.refuse_early_data = false;
    Harness off(settings);
    open_transaction(off);
    CHECK(off.send("DATA\r\nx\r\n.\r\n") == "354 | 250 2.0.0");
    CHECK(off.intake.committed_count() == 1);
}

TEST_CASE("a PROXY header, v1 or v2, is refused with 554 on a listener without PROXY") {
    // Before EHLO replies carry no enhanced code. The v2 signature is CRLF CRLF NUL CRLF "QUIT" LF:
    // read as lines it would be a QUIT.
    const std::string v2_signature("\r\n\r\n\0\r\nQUIT\n", 12);
    const std::string v2 = v2_signature + std::string("\x21\x11\x00\x0c", 4) +
                           std::string("\xc0\x00\x02\x01\x7f\x00\x00\x01\x0f\xa0\x00\x19", 12);
    {
        Harness h;
        CHECK(h.send("PROXY TCP4 192.0.2.1 127.0.0.1 4000 25\r\n") == "554");
        CHECK(h.closed);
    }
    {
        Harness h;
        CHECK(h.send(v2) == "554");
        CHECK(h.closed);
    }
    {
        // Byte by byte: a prefix of the signature waits for more, it is no empty command.
        Harness h;
        std::string replies;
        for (const char c : v2_signature) {
            replies += h.send(std::string(1, c));
        }
        CHECK(replies == "554");
        CHECK(h.closed);
    }
    {
        // After the first command the signature's bytes are lines like any others.
        Harness h;
        CHECK(h.send("NOOP\r\n") == "250");
        CHECK(h.send("\r\n") == "500");
        CHECK_FALSE(h.closed);
    }
}
