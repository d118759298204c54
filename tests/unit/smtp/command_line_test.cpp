#include <doctest/doctest.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>
#include <vector>

#include "smtp/command_line.hpp"

using namespace spoold::smtp;

TEST_CASE("a command line reads into its verb, in any case, and its argument without trailing "
          "blanks") {
    struct Row {
        std::string line;
        Verb verb;
        std::string verb_text;
        std::string arg;
    };
    const Row rows[] = {
        {"EHLO client.example", Verb::kEhlo, "EHLO", "client.example"},
        {"ehlo client.example", Verb::kEhlo, "ehlo", "client.example"},
        {"HeLo x", Verb::kHelo, "HeLo", "x"},
        {"MAIL FROM:<a@b> SIZE=10", Verb::kMail, "MAIL", "FROM:<a@b> SIZE=10"},
        {"RCPT TO:<a@b>  \t", Verb::kRcpt, "RCPT", "TO:<a@b>"},
        {"DATA", Verb::kData, "DATA", ""},
        {"DATA ", Verb::kData, "DATA", ""},
        {"BDAT 10 LAST", Verb::kBdat, "BDAT", "10 LAST"},
        {"RSET", Verb::kRset, "RSET", ""},
        {"NOOP anything", Verb::kNoop, "NOOP", "anything"},
        {"QUIT", Verb::kQuit, "QUIT", ""},
        {"VRFY postmaster", Verb::kVrfy, "VRFY", "postmaster"},
        {"EXPN list", Verb::kExpn, "EXPN", "list"},
        {"HELP", Verb::kHelp, "HELP", ""},
        {"starttls", Verb::kStartTls, "starttls", ""},
        {"PROXY TCP4 192.0.2.1 198.51.100.7 1 2", Verb::kProxy, "PROXY",
         "TCP4 192.0.2.1 198.51.100.7 1 2"},
        // Not ours: a prefix, a longer word, an empty line, a leading space.
        {"MAI FROM:<a@b>", Verb::kUnknown, "MAI", "FROM:<a@b>"},
        {"MAILX", Verb::kUnknown, "MAILX", ""},
        {"", Verb::kUnknown, "", ""},
        {" QUIT", Verb::kUnknown, "", "QUIT"},
        {"QUIT\t", Verb::kUnknown, "QUIT\t", ""},
    };
    for (const auto& row : rows) {
        CAPTURE(row.line);
        const CommandLine c = parse_command_line(row.line);
        CHECK(c.verb == row.verb);
        CHECK(c.verb_text == row.verb_text);
        CHECK(c.arg == row.arg);
    }
}

TEST_CASE("a control byte other than a tab marks a command line as garbage") {
    struct Row {
        std::string line;
        bool control;
    };
    const Row rows[] = {
        {"EHLO client.example", false},
        {"EHLO\tclient", false},
        {"MAIL FROM:<j\xc3\xa9@b>", false}, // UTF-8 is not control
        {std::string("EHLO a\0b", 8), true},
        {"EHLO a\rb", true},
        {"EHLO \x1b[2J", true},
        {"EHLO a\x7f", true},
        {"", false},
    };
    for (const auto& row : rows) {
        CAPTURE(row.line);
        CHECK(has_control(row.line) == row.control);
    }
}

TEST_CASE("HELP lists the verbs the table marks, in its order: not EXPN, not PROXY") {
    CHECK(help_text() ==
          "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS");
}

TEST_CASE("MAIL's and RCPT's argument after its prefix, in any case, spaces after it skipped") {
    struct Row {
        std::string arg;
        std::string prefix;
        bool found;
        std::string rest;
    };
    const Row rows[] = {
        {"FROM:<a@b>", "FROM:", true, "<a@b>"},
        {"from:<a@b> SIZE=1", "FROM:", true, "<a@b> SIZE=1"},
        {"FROM:  <a@b>", "FROM:", true, "<a@b>"},
        {"FROM:", "FROM:", true, ""},
        {"TO:<a@b>", "TO:", true, "<a@b>"},
        {"FROM <a@b>", "FROM:", false, ""},
        {"FRO", "FROM:", false, ""},
        {" FROM:<a@b>", "FROM:", false, ""},
        {"TO:<a@b>", "FROM:", false, ""},
    };
    for (const auto& row : rows) {
        CAPTURE(row.arg);
        const auto rest = after_prefix(row.arg, row.prefix);
        REQUIRE(rest.has_value() == row.found);
        if (rest) {
            CHECK(*rest == row.rest);
        }
    }
}

TEST_CASE("BDAT's argument: a decimal size and LAST in any case, or nothing") {
    struct Row {
        std::string arg;
        bool ok;
        std::uint64_t size;
        bool last;
    };
    const Row rows[] = {
        {"0", true, 0, false},
        {"100", true, 100, false},
        {"100 LAST", true, 100, true},
        {"100 last", true, 100, true},
        {"9999999999999999999", true, 9'999'999'999'999'999'999ULL, false},
        {"", false, 0, false},
        {"LAST", false, 0, false},
        {"-1", false, 0, false},
        {"10 LAST X", false, 0, false},
        {"10 FIRST", false, 0, false},
        {"10  LAST", false, 0, false},
        {"0x10", false, 0, false},
        {"99999999999999999999", false, 0, false}, // 20 digits
    };
    for (const auto& row : rows) {
        CAPTURE(row.arg);
        const auto b = parse_bdat_args(row.arg);
        REQUIRE(b.has_value() == row.ok);
        if (b) {
            CHECK(b->size == row.size);
            CHECK(b->last == row.last);
        }
    }
}

TEST_CASE("ESMTP parameters split for the filters: one string each, runs of spaces skipped") {
    struct Row {
        std::string text;
        std::vector<std::string> params;
    };
    const Row rows[] = {
        {"", {}},
        {"SIZE=10", {"SIZE=10"}},
        {"SIZE=10 BODY=8BITMIME", {"SIZE=10", "BODY=8BITMIME"}},
        {" SIZE=10  SMTPUTF8 ", {"SIZE=10", "SMTPUTF8"}},
    };
    for (const auto& row : rows) {
        CAPTURE(row.text);
        CHECK(fmt::format("{}", split_params(row.text)) == fmt::format("{}", row.params));
    }
}
