#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "smtp/header_section.hpp"

using namespace spoold::smtp;

namespace {

struct Split {
    std::string head; // render()
    std::string body;
    bool ended = false;
};

// Feeds `message` in pieces of `piece` bytes, then finishes it.
Split split(std::string_view message, std::size_t piece = std::string_view::npos) {
    HeaderSection h;
    Split s;
    for (std::size_t pos = 0; pos < message.size(); pos += piece) {
        h.feed(message.substr(pos, piece), s.body);
        if (piece == std::string_view::npos) {
            break;
        }
    }
    s.ended = h.ended();
    h.finish(s.body);
    s.head = h.render();
    return s;
}

std::string names(const HeaderSection& h) {
    std::string out;
    for (const auto& f : h.fields_for_filters()) {
        out += (out.empty() ? "" : ",") + f.name;
    }
    return out;
}

HeaderSection parsed(std::string_view message) {
    HeaderSection h;
    h.add_own("Received", "Received: from client\r\n\tby us; date\r\n");
    std::string body;
    h.feed(message, body);
    h.finish(body);
    return h;
}

} // namespace

TEST_CASE("the header section ends at the empty line, a non-field line, or the bound") {
    struct Row {
        std::string message;
        std::string head;
        std::string body;
        bool ended; // before finish()
    };
    const std::string big_line = "X-Big: " + std::string(kMaxHeaderSection, 'b') + "\r\n";
    const Row rows[] = {
        {"Subject: a\r\n\r\nbody\r\n", "Subject: a\r\n", "\r\nbody\r\n", true},
        {"Subject: a\r\n folded\r\n\tagain\r\nTo: b\r\n\r\n",
         "Subject: a\r\n folded\r\n\tagain\r\nTo: b\r\n", "\r\n", true},
        {"\r\nbody only\r\n", "", "\r\nbody only\r\n", true},
        {"Subject: only headers\r\n", "Subject: only headers\r\n", "", false},
        {"Subject : obsolete\r\n\r\n", "Subject : obsolete\r\n", "\r\n", true},
        // No field: the line starts the body (nothing is lost).
        {"Subject: a\r\nnot a field\r\nmore\r\n", "Subject: a\r\n", "not a field\r\nmore\r\n",
         true},
        {"From someone Mon Jan 1\r\nSubject: a\r\n", "", "From someone Mon Jan 1\r\nSubject: a\r\n",
         true},
        {" continuation first\r\n", "", " continuation first\r\n", true},
        {"Bad Name: x\r\n\r\n", "", "Bad Name: x\r\n\r\n", true},
        // Over the bound: the field that does not fit and all after it are body.
        {"Subject: a\r\n" + big_line + "To: b\r\n", "Subject: a\r\n", big_line + "To: b\r\n", true},
        // A last line without its CRLF (never at the end of DATA) goes to the body.
        {"Subject: a\r\nTo: b", "Subject: a\r\n", "To: b", false},
    };
    for (const auto& row : rows) {
        CAPTURE(row.message.substr(0, 60));
        for (const std::size_t piece : {std::string_view::npos, std::size_t{1}, std::size_t{3}}) {
            CAPTURE(piece);
            const Split s = split(row.message, piece);
            CHECK(s.head == row.head);
            CHECK(s.body == row.body);
            CHECK(s.ended == row.ended);
            CHECK(s.head + s.body == row.message); // nothing lost, nothing added
        }
    }
}

TEST_CASE("filters see the client's fields with the first space removed and LF line breaks") {
    HeaderSection h = parsed("Subject:  two spaces\r\nTo: a,\r\n\tb\r\nX-Empty:\r\n\r\n");
    const auto fields = h.fields_for_filters();
    REQUIRE(fields.size() == 3); // our Received: is hidden
    CHECK(fields[0].name == "Subject");
    CHECK(fields[0].value == " two spaces");
    CHECK(fields[1].name == "To");
    CHECK(fields[1].value == "a,\n\tb");
    CHECK(fields[2].name == "X-Empty");
    CHECK(fields[2].value.empty());
}

TEST_CASE("Authentication-Results claiming our authserv-id are removed, others kept") {
    const std::string message =
        "Authentication-Results: mx.example.com; spf=pass\r\n"
        "Authentication-Results: MX.Example.COM 1; dkim=pass\r\n"
        "Authentication-Results: (forged) \"mx.example.com\"; dmarc=pass\r\n"
        "Authentication-Results:\r\n mx.example.com;\r\n\tarc=pass\r\n"
        "authentication-results: mx.example.com(c);none\r\n"
        "Authentication-Results: other.example; spf=fail\r\n"
        "Authentication-Results: mx.example.com.evil; spf=pass\r\n"
        "X-Authentication-Results: mx.example.com; kept\r\n"
        "Subject: s\r\n\r\n";
    HeaderSection h = parsed(message);
    CHECK(h.remove_authentication_results("mx.example.com") == 5);
    CHECK(names(h) == "Authentication-Results,Authentication-Results,X-Authentication-Results,"
                      "Subject");
    CHECK(h.render() == "Received: from client\r\n\tby us; date\r\n"
                        "Authentication-Results: other.example; spf=fail\r\n"
                        "Authentication-Results: mx.example.com.evil; spf=pass\r\n"
                        "X-Authentication-Results: mx.example.com; kept\r\n"
                        "Subject: s\r\n");
}

TEST_CASE("the authserv-id of an Authentication-Results value") {
    const std::pair<const char*, const char*> rows[] = {
        {" mx.example.com; spf=pass", "mx.example.com"},
        {"mx.example.com 1; none", "mx.example.com"},
        {" (comment (nested) \\) ) mx.example.com;", "mx.example.com"},
        {" \"quoted \\\" id\"; x", "quoted \" id"},
        {"\r\n\tfolded.example;", "folded.example"},
        {"", ""},
        {" ; none", ""},
    };
    for (const auto& [value, id] : rows) {
        CAPTURE(value);
        CHECK(authserv_id_of(value) == id);
    }
}

TEST_CASE("filter edits: add at the end, insert by position, change by occurrence") {
    HeaderSection h = parsed("Subject: s\r\nX-Tag: 1\r\nX-Tag: 2\r\n\r\n");
    CHECK(h.add("X-Spam", "no"));
    CHECK(h.insert(0, "X-Top", "above our Received"));
    CHECK(h.insert(2, "X-Third", "v"));
    CHECK(h.insert(1000, "X-Last", "past the end"));
    CHECK(h.change(2, "x-tag", "second"));
    CHECK(h.change(1, "X-Tag", "")); // deletes the first
    CHECK(h.change(5, "X-New", "no fifth: added"));
    CHECK(h.change(1, "X-Absent", "")); // deleting nothing is fine
    CHECK(h.render() == "X-Top: above our Received\r\n"
                        "Received: from client\r\n\tby us; date\r\n"
                        "X-Third: v\r\n"
                        "Subject: s\r\n"
                        "x-tag: second\r\n"
                        "X-Spam: no\r\n"
                        "X-Last: past the end\r\n"
                        "X-New: no fifth: added\r\n");
}

TEST_CASE("edited values keep the header structure: breaks continue, names are checked") {
    HeaderSection h = parsed("Subject: s\r\n\r\n");
    CHECK(h.add("X-Folded", "a\n\tb\r\n c"));
    CHECK(h.add("X-Injected", "a\r\nBcc: victim@example.com\nX: y\n"));
    CHECK(h.add("X-Lone-CR", "a\rb"));
    CHECK_FALSE(h.add("Bad Name", "x"));
    CHECK_FALSE(h.add("", "x"));
    CHECK_FALSE(h.insert(0, "Colon:", "x"));
    CHECK_FALSE(h.change(1, "Bad\r\nName", "x"));
    CHECK(h.render() == "Received: from client\r\n\tby us; date\r\n"
                        "Subject: s\r\n"
                        "X-Folded: a\r\n\tb\r\n c\r\n"
                        "X-Injected: a\r\n\tBcc: victim@example.com\r\n\tX: y\r\n"
                        "X-Lone-CR: a b\r\n");
}

TEST_CASE("change counts only the client's fields: our Received: cannot be touched") {
    HeaderSection h = parsed("Received: from elsewhere\r\n\r\n");
    CHECK(h.change(1, "Received", "replaced"));
    CHECK(h.render() == "Received: from client\r\n\tby us; date\r\nReceived: replaced\r\n");
    CHECK(h.size() == h.render().size());
}
