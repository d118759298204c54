#include <doctest/doctest.h>

#include <string>

#include "smtp/received_header.hpp"

using namespace spoold;
using namespace spoold::smtp;

namespace {

constexpr UnixMillis kNow = 1'795'378'200'123; // Sun, 22 Nov 2026 20:10:00 +0000

ReceivedFields base() {
    ReceivedFields f;
    f.helo = "client.example";
    f.client_addr = "192.0.2.1";
    f.hostname = "mx.example";
    f.queue_id = "ID1";
    f.esmtp = true;
    f.now_ms = kNow;
    return f;
}

} // namespace

TEST_CASE("the Received: header names the protocol by RFC 3848: TLS and SMTPUTF8 each change it") {
    struct Row {
        bool esmtp;
        bool smtputf8;
        bool tls;
        std::string proto;
    };
    const Row rows[] = {
        {false, false, false, "SMTP"},   {false, false, true, "SMTP"},
        {true, false, false, "ESMTP"},   {true, false, true, "ESMTPS"},
        {true, true, false, "UTF8SMTP"}, {true, true, true, "UTF8SMTPS"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.proto);
        ReceivedFields f = base();
        f.esmtp = row.esmtp;
        f.smtputf8 = row.smtputf8;
        if (row.tls) {
            f.tls = "version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256";
        }
        const std::string h = received_header(f);
        CHECK(h.find(" with " + row.proto + " id ID1") != std::string::npos);
        CHECK((h.find("\t(using version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256)\r\n") !=
               std::string::npos) == row.tls);
    }
}

TEST_CASE("the whole Received: header, with one recipient named and an IPv6 literal") {
    ReceivedFields f = base();
    CHECK(received_header(f) == "Received: from client.example ([192.0.2.1])\r\n"
                                "\tby mx.example (spoold) with ESMTP id ID1;\r\n"
                                "\tSun, 22 Nov 2026 20:10:00 +0000\r\n");
    f.client_addr = "2001:db8::1";
    f.only_recipient = "rcpt@example.org";
    CHECK(received_header(f) == "Received: from client.example ([IPv6:2001:db8::1])\r\n"
                                "\tby mx.example (spoold) with ESMTP id ID1\r\n"
                                "\tfor <rcpt@example.org>;\r\n"
                                "\tSun, 22 Nov 2026 20:10:00 +0000\r\n");
}

TEST_CASE("text from the client cannot break the Received: header's structure") {
    struct Row {
        std::string text;
        bool allow_space;
        std::string out;
    };
    const Row rows[] = {
        {"client.example", false, "client.example"},
        {"a b", false, "a_b"},
        {"a b", true, "a b"},
        {"x(y)z", false, "x_y_z"},
        {"a;b\\c\"d", true, "a_b_c_d"},
        {"a\r\nX-Evil: 1", false, "a__X-Evil:_1"},
        {"a\tb\x7f", true, "a_b_"},
        {"h\xc3\xa9llo", false, "h\xc3\xa9llo"}, // UTF-8 kept
        {"", false, ""},
    };
    for (const auto& row : rows) {
        CAPTURE(row.text);
        CHECK(sanitize_for_header(row.text, row.allow_space) == row.out);
    }
    ReceivedFields f = base();
    f.helo = "evil)\r\nBcc: x";
    CHECK(received_header(f).rfind("Received: from evil___Bcc:_x ([192.0.2.1])\r\n", 0) == 0);
}
