#include <doctest/doctest.h>

#include "tools/spoolctl/mbox.hpp"

using namespace spoold::spoolctl;

TEST_CASE("mboxrd quotes From_ lines at any depth and the round trip restores them") {
    const std::string message =
        "Subject: x\r\n\r\nFrom here\r\n>From there\r\n>>From far\r\nFromage\r\n";
    std::string mbox;
    append_mboxrd(mbox, mbox_from_line("a@b", 0), message);
    CHECK(mbox == "From a@b Thu Jan  1 00:00:00 1970\n"
                  "Subject: x\n\n>From here\n>>From there\n>>>From far\nFromage\n\n");
    const auto back = parse_mbox(mbox);
    REQUIRE(back.size() == 1);
    CHECK(back[0].sender == "a@b");
    CHECK(back[0].message == message);
}

TEST_CASE("several messages, empty lines at their ends and the null sender survive an mbox") {
    const std::vector<std::string> messages = {
        "A: 1\r\n\r\nbody\r\n", "B: 2\r\n\r\nends blank\r\n\r\n", "C: 3\r\n\r\n\r\n\r\nFrom x\r\n"};
    std::string mbox;
    append_mboxrd(mbox, mbox_from_line("", 0), messages[0]);
    append_mboxrd(mbox, mbox_from_line("s@x", 0), messages[1]);
    append_mboxrd(mbox, mbox_from_line("we ird\n@x", 0), messages[2]);
    const auto back = parse_mbox(mbox);
    REQUIRE(back.size() == 3);
    CHECK(back[0].sender == "MAILER-DAEMON");
    CHECK(back[1].sender == "s@x");
    CHECK(back[2].sender == "we_ird_@x");
    for (std::size_t i = 0; i < messages.size(); ++i) {
        CHECK(back[i].message == messages[i]);
    }
}

TEST_CASE("text that is not an mbox is refused, not imported as one message") {
    std::string text = "Subject: hi\n\nbody\n";
    std::FILE* f = fmemopen(text.data(), text.size(), "r");
    REQUIRE(f != nullptr);
    MboxReader reader(f);
    CHECK_FALSE(reader.next().has_value());
    CHECK(reader.bad_format());
    std::fclose(f);
}

TEST_CASE("the envelope block round-trips and is taken only from the top") {
    FileEnvelope env;
    env.mail_from = "";
    env.recipients = {"a@x", "b@y"};
    env.klass = "urgent";
    std::string message = envelope_block(env) + "Received: by us\r\n\r\nbody\r\n";
    const auto got = take_envelope_block(message);
    CHECK(got.mail_from == std::optional<std::string>(""));
    CHECK(got.recipients == env.recipients);
    CHECK(got.klass == "urgent");
    CHECK(message == "Received: by us\r\n\r\nbody\r\n");

    std::string forged = "Received: by us\r\nX-Spoold-Envelope-To: <victim@z>\r\n\r\n";
    const auto none = take_envelope_block(forged);
    CHECK(none.recipients.empty());
    CHECK_FALSE(none.mail_from.has_value());
    CHECK(forged == "Received: by us\r\nX-Spoold-Envelope-To: <victim@z>\r\n\r\n");
}

TEST_CASE("bare LF becomes CRLF and CRLF stays") {
    CHECK(to_crlf("a\nb\r\nc\n") == "a\r\nb\r\nc\r\n");
    CHECK(to_crlf("\n") == "\r\n");
}

TEST_CASE("import refuses a bare CR or a NUL byte as the SMTP listener does, after to_crlf") {
    using namespace std::string_literals;
    CHECK(content_problem(to_crlf("A: 1\n\nbody\n")).empty());
    CHECK(content_problem("A: 1\r\n\r\nbody\r\n").empty());
    CHECK(content_problem("").empty());
    CHECK(content_problem(to_crlf("A: 1\n\nold\rmac\n")).starts_with("bare CR"));
    CHECK(content_problem(to_crlf("A: 1\n\nbody\r")).starts_with("bare CR")); // at the end
    CHECK(content_problem(to_crlf("A: 1\r\r\n\nbody\n")).starts_with("bare CR"));
    CHECK(content_problem("A: 1\r\n\r\nnul\0byte\r\n"s).starts_with("NUL byte"));
}

TEST_CASE("the header section ends at the first empty line") {
    CHECK(header_section("A: 1\r\nB: 2\r\n\r\nbody\r\n") == "A: 1\r\nB: 2\r\n");
    CHECK(header_section("A: 1\nB: 2\n\nbody\n") == "A: 1\nB: 2\n");
    CHECK(header_section("A: 1\r\n") == "A: 1\r\n");
}
