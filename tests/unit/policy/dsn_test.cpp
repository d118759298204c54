#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "policy/dsn.hpp"
#include "policy/header_scan.hpp"

using namespace spoold;
using namespace spoold::policy;

namespace {

constexpr UnixMillis kArrival = 1'700'000'000'000; // Tue, 14 Nov 2023 22:13:20 +0000
const std::string kOriginal = "From: Sender <sender@example.org>\r\n"
                              "To: alice@example.com\r\n"
                              "Subject: quarterly report\r\n"
                              "Message-ID: <orig@example.org>\r\n"
                              "\r\n"
                              "Body line one\r\n"
                              "secret body text\r\n";

DsnInput failed_input() {
    DsnInput in;
    in.reporting_host = "mx1.example.com";
    in.from_address = "MAILER-DAEMON@mx1.example.com";
    in.envelope_sender = "sender@example.org";
    in.envid = "ENV-42";
    in.queue_id = "0ABCDEFGHJKMN";
    in.arrival_ms = kArrival;
    in.now_ms = kArrival + 60'000;
    DsnRecipient bad;
    bad.address = "bob@example.com";
    bad.orcpt = "rfc822;Bob@Example.com";
    bad.action = DsnAction::kFailed;
    bad.diagnostic = "550 5.1.1 <bob@example.com>: no such user";
    bad.last_attempt_ms = kArrival + 30'000;
    DsnRecipient old;
    old.address = "carol@example.com";
    old.action = DsnAction::kExpired;
    old.diagnostic = "451 4.3.0 mailstore unavailable";
    in.recipients = {bad, old};
    in.original = kOriginal;
    return in;
}

struct Part {
    std::vector<HeaderField> headers;
    std::string body;
};

std::string header(const std::vector<HeaderField>& fields, std::string_view name) {
    for (const auto& f : fields) {
        if (header_name_equal(f.name, name)) {
            return f.value;
        }
    }
    return "(missing)";
}

// Splits a message into its header fields and body at the first empty line.
Part split(std::string_view message) {
    const auto end = message.find("\r\n\r\n");
    REQUIRE(end != std::string_view::npos);
    return Part{scan_headers(message.substr(0, end + 2)), std::string(message.substr(end + 4))};
}

// A small independent MIME reader: the parts of a multipart body by its boundary.
std::vector<Part> parts_of(const std::string& body, const std::string& boundary) {
    const std::string delimiter = "\r\n--" + boundary;
    const std::string padded = "\r\n" + body;
    std::vector<Part> parts;
    auto pos = padded.find(delimiter);
    REQUIRE(pos != std::string::npos);
    while (true) {
        pos += delimiter.size();
        if (padded.compare(pos, 2, "--") == 0) {
            CHECK(padded.compare(pos, 4, "--\r\n") == 0);
            break;
        }
        REQUIRE(padded.compare(pos, 2, "\r\n") == 0);
        pos += 2;
        const auto next = padded.find(delimiter, pos);
        REQUIRE(next != std::string::npos);
        parts.push_back(split(std::string_view(padded).substr(pos, next - pos)));
        pos = next;
    }
    return parts;
}

std::string boundary_of(const std::string& content_type) {
    const auto at = content_type.find("boundary=\"");
    REQUIRE(at != std::string::npos);
    const auto start = at + 10;
    return content_type.substr(start, content_type.find('"', start) - start);
}

} // namespace

TEST_CASE("a failure DSN parses back into a three-part multipart/report") {
    const std::string dsn = build_dsn(failed_input());
    // Every line ends in CRLF and none is longer than RFC 5322 allows.
    std::size_t line_start = 0;
    for (std::size_t i = 0; i < dsn.size(); ++i) {
        if (dsn[i] == '\n') {
            REQUIRE(i > 0);
            CHECK(dsn[i - 1] == '\r');
            CHECK(i - line_start <= 1000);
            line_start = i + 1;
        }
    }
    CHECK(dsn.ends_with("\r\n"));

    const Part top = split(dsn);
    CHECK(header(top.headers, "From") == "Mail Delivery System <MAILER-DAEMON@mx1.example.com>");
    CHECK(header(top.headers, "To") == "<sender@example.org>");
    CHECK(header(top.headers, "Subject") == "Undelivered Mail Returned to Sender");
    CHECK(header(top.headers, "Date") == "Tue, 14 Nov 2023 22:14:20 +0000");
    CHECK(header(top.headers, "Auto-Submitted") == "auto-replied");
    CHECK(header(top.headers, "MIME-Version") == "1.0");
    CHECK(header(top.headers, "Message-ID").starts_with("<dsn.0ABCDEFGHJKMN."));
    const std::string content_type = header(top.headers, "Content-Type");
    CHECK(content_type.starts_with("multipart/report; report-type=delivery-status;"));

    const auto parts = parts_of(top.body, boundary_of(content_type));
    REQUIRE(parts.size() == 3);
    CHECK(header(parts[0].headers, "Content-Type").starts_with("text/plain"));
    CHECK(parts[0].body.find("<bob@example.com>: 550 5.1.1") != std::string::npos);
    CHECK(parts[0].body.find("<carol@example.com>: not delivered within the retention period") !=
          std::string::npos);

    CHECK(header(parts[1].headers, "Content-Type") == "message/delivery-status");
    // The delivery-status body: per-message fields, then one block per recipient.
    const std::string& status = parts[1].body;
    const auto first_blank = status.find("\r\n\r\n");
    const auto per_message = scan_headers(status.substr(0, first_blank + 2));
    CHECK(header(per_message, "Reporting-MTA") == "dns; mx1.example.com");
    CHECK(header(per_message, "Original-Envelope-Id") == "ENV-42");
    CHECK(header(per_message, "Arrival-Date") == "Tue, 14 Nov 2023 22:13:20 +0000");
    const auto second_blank = status.find("\r\n\r\n", first_blank + 4);
    const auto bob = scan_headers(status.substr(first_blank + 4, second_blank - first_blank - 2));
    CHECK(header(bob, "Original-Recipient") == "rfc822;Bob@Example.com");
    CHECK(header(bob, "Final-Recipient") == "rfc822; bob@example.com");
    CHECK(header(bob, "Action") == "failed");
    CHECK(header(bob, "Status") == "5.1.1");
    CHECK(header(bob, "Diagnostic-Code") == "smtp; 550 5.1.1 <bob@example.com>: no such user");
    CHECK(header(bob, "Last-Attempt-Date") == "Tue, 14 Nov 2023 22:13:50 +0000");
    const auto carol = scan_headers(status.substr(second_blank + 4));
    CHECK(header(carol, "Final-Recipient") == "rfc822; carol@example.com");
    CHECK(header(carol, "Original-Recipient") == "(missing)");
    CHECK(header(carol, "Action") == "failed");
    CHECK(header(carol, "Status") == "4.4.7");
    CHECK(header(carol, "Last-Attempt-Date") == "(missing)");

    // Without RET=FULL only the original header comes back.
    CHECK(header(parts[2].headers, "Content-Type") == "text/rfc822-headers");
    CHECK(parts[2].body.find("Subject: quarterly report\r\n") != std::string::npos);
    CHECK(parts[2].body.find("secret body text") == std::string::npos);
}

TEST_CASE("RET=FULL returns the whole message unless it is too large") {
    DsnInput in = failed_input();
    in.ret = "FULL";
    const Part top = split(build_dsn(in));
    auto parts = parts_of(top.body, boundary_of(header(top.headers, "Content-Type")));
    REQUIRE(parts.size() == 3);
    CHECK(header(parts[2].headers, "Content-Type") == "message/rfc822");
    CHECK(parts[2].body.find("secret body text") != std::string::npos);

    in.max_full_bytes = 50;
    const Part small = split(build_dsn(in));
    parts = parts_of(small.body, boundary_of(header(small.headers, "Content-Type")));
    REQUIRE(parts.size() == 3);
    CHECK(header(parts[2].headers, "Content-Type") == "text/rfc822-headers");
}

TEST_CASE("a delay warning says delayed and keeps the 4xx status") {
    DsnInput in = failed_input();
    in.envid.clear();
    in.recipients.resize(1);
    in.recipients[0].action = DsnAction::kDelayed;
    in.recipients[0].diagnostic = "452 4.2.2 mailbox full";
    const std::string dsn = build_dsn(in);
    const Part top = split(dsn);
    CHECK(header(top.headers, "Subject") == "Delayed Mail (still being retried)");
    CHECK(dsn.find("Action: delayed\r\n") != std::string::npos);
    CHECK(dsn.find("Status: 4.2.2\r\n") != std::string::npos);
    CHECK(dsn.find("Original-Envelope-Id") == std::string::npos);
}

TEST_CASE("the boundary never occurs in the returned original") {
    DsnInput in = failed_input();
    const std::string first = boundary_of(header(split(build_dsn(in)).headers, "Content-Type"));
    const std::string hostile = "X-Trap: --" + first + "\r\n\r\nbody\r\n";
    in.original = hostile;
    const Part top = split(build_dsn(in));
    const std::string second = boundary_of(header(top.headers, "Content-Type"));
    CHECK(second != first);
    CHECK(parts_of(top.body, second).size() == 3);
}

TEST_CASE("bare LF in the original and line breaks in peer text are made safe") {
    DsnInput in = failed_input();
    in.original = "Subject: lf only\nX: y\n\nbody\n";
    in.recipients[0].diagnostic = "550 5.1.1 evil\r\nInjected: header";
    const std::string dsn = build_dsn(in);
    CHECK(dsn.find("\nInjected:") == std::string::npos);
    CHECK(dsn.find("Subject: lf only\r\nX: y\r\n") != std::string::npos);
    for (std::size_t i = 0; i < dsn.size(); ++i) {
        if (dsn[i] == '\n') {
            CHECK(dsn[i - 1] == '\r');
        }
    }
}

TEST_CASE("DSNs follow NOTIFY and never go to the null sender") {
    CHECK(dsn_wanted("a@example.org", 0, DsnAction::kFailed));
    CHECK(dsn_wanted("a@example.org", 0, DsnAction::kExpired));
    CHECK(dsn_wanted("a@example.org", 0, DsnAction::kDelayed));
    CHECK_FALSE(dsn_wanted("", 0, DsnAction::kFailed));
    CHECK_FALSE(dsn_wanted("<>", kDsnNotifyFailure, DsnAction::kFailed));
    CHECK_FALSE(dsn_wanted("a@example.org", kDsnNotifyNever, DsnAction::kFailed));
    CHECK_FALSE(dsn_wanted("a@example.org", kDsnNotifyNever, DsnAction::kDelayed));
    CHECK(dsn_wanted("a@example.org", kDsnNotifyFailure, DsnAction::kFailed));
    CHECK(dsn_wanted("a@example.org", kDsnNotifyFailure, DsnAction::kExpired));
    CHECK_FALSE(dsn_wanted("a@example.org", kDsnNotifyFailure, DsnAction::kDelayed));
    CHECK(dsn_wanted("a@example.org", kDsnNotifyDelay, DsnAction::kDelayed));
    CHECK_FALSE(dsn_wanted("a@example.org", kDsnNotifyDelay, DsnAction::kFailed));
    CHECK_FALSE(dsn_wanted("a@example.org", kDsnNotifySuccess, DsnAction::kFailed));
    // Success only when asked for, never by default, never to the null sender.
    CHECK(dsn_wanted("a@example.org", kDsnNotifySuccess, DsnAction::kDelivered));
    CHECK(dsn_wanted("a@example.org", kDsnNotifySuccess | kDsnNotifyFailure, DsnAction::kRelayed));
    CHECK_FALSE(dsn_wanted("a@example.org", 0, DsnAction::kDelivered));
    CHECK_FALSE(
        dsn_wanted("a@example.org", kDsnNotifyFailure | kDsnNotifyDelay, DsnAction::kDelivered));
    CHECK_FALSE(dsn_wanted("", kDsnNotifySuccess, DsnAction::kDelivered));
}

TEST_CASE("a success DSN says delivered or relayed with a 2.x.x status and returns only the "
          "header, even for RET=FULL") {
    DsnInput in = failed_input();
    in.ret = "FULL";
    in.recipients[0].action = DsnAction::kDelivered;
    in.recipients[0].diagnostic = "250 2.1.5 Saved";
    in.recipients[1].action = DsnAction::kRelayed;
    in.recipients[1].diagnostic = "250 2.0.0 queued as 1234";
    const std::string dsn = build_dsn(in);
    const Part top = split(dsn);
    CHECK(header(top.headers, "Subject") == "Successful Mail Delivery Report");
    auto parts = parts_of(top.body, boundary_of(header(top.headers, "Content-Type")));
    REQUIRE(parts.size() == 3);
    CHECK(parts[1].body.find("Final-Recipient: rfc822; bob@example.com\r\n"
                             "Action: delivered\r\nStatus: 2.1.5\r\n") != std::string::npos);
    CHECK(parts[1].body.find("Final-Recipient: rfc822; carol@example.com\r\n"
                             "Action: relayed\r\nStatus: 2.0.0\r\n") != std::string::npos);
    CHECK(header(parts[2].headers, "Content-Type") == "text/rfc822-headers");
    CHECK(parts[2].body.find("secret body text") == std::string::npos);
    CHECK(parts[2].body.find("Subject: quarterly report") != std::string::npos);

    // One failure among them: the report is about a failure, and RET=FULL returns it all.
    in.recipients[1].action = DsnAction::kFailed;
    in.recipients[1].diagnostic = "550 5.1.1 no such user";
    const Part mixed = split(build_dsn(in));
    CHECK(header(mixed.headers, "Subject") == "Undelivered Mail Returned to Sender");
    parts = parts_of(mixed.body, boundary_of(header(mixed.headers, "Content-Type")));
    REQUIRE(parts.size() == 3);
    CHECK(parts[1].body.find("Action: delivered\r\n") != std::string::npos);
    CHECK(parts[1].body.find("Action: failed\r\nStatus: 5.1.1\r\n") != std::string::npos);
    CHECK(header(parts[2].headers, "Content-Type") == "message/rfc822");
}

TEST_CASE("the DSN sender gets the hostname when it is a bare local part") {
    Config c;
    c.hostname = "mx1.example.com";
    CHECK(dsn_from_address(c) == "MAILER-DAEMON@mx1.example.com");
    c.bounces.dsn_sender = "bounces@example.com";
    CHECK(dsn_from_address(c) == "bounces@example.com");
}
