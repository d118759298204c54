#include <doctest/doctest.h>

#include <set>
#include <string>
#include <vector>

#include "tools/spoolctl/cli.hpp"
#include "tools/spoolctl/verbs.hpp"

using namespace spoold;
using namespace spoold::spoolctl;

namespace {

std::string refusal(std::vector<std::string> args) {
    const auto cl = parse_command_line(args);
    REQUIRE_FALSE(cl);
    CHECK(cl.error().kind == ErrorKind::kInvalid);
    return cl.error().message;
}

} // namespace

TEST_CASE("every verb of the table parses, is found by name, and runs something") {
    std::set<std::string_view> names;
    for (const Verb& v : verbs()) {
        CAPTURE(v.name);
        CHECK(names.insert(v.name).second);
        CHECK(find_verb(v.name) == &v);
        CHECK((v.run != nullptr));
        CHECK(v.synopsis.starts_with(v.name));
        const auto cl = parse_command_line({std::string(v.name)});
        REQUIRE(cl);
        CHECK(cl->verb == v.name);
    }
    CHECK(find_verb("help") == nullptr); // help needs no spool: the parser knows it
    CHECK(find_verb("frobnicate") == nullptr);
}

TEST_CASE("the spool is opened read-only exactly for the verbs that never write") {
    struct Row {
        std::vector<std::string> args;
        bool read_only;
    };
    const Row rows[] = {
        {{"status"}, true},
        {{"list"}, true},
        {{"show", "X"}, true},
        {{"export", "--all"}, true},
        {{"check"}, true},
        {{"check", "--repair"}, false},
        {{"hold", "--all"}, false},
        {{"release", "--all"}, false},
        {{"delete", "--all"}, false},
        {{"flush"}, false},
        {{"set-class", "bulk"}, false},
        {{"requeue", "--all"}, false},
        {{"pause"}, false},
        {{"resume"}, false},
        {{"import", "m.eml"}, false},
    };
    for (const auto& row : rows) {
        CAPTURE(row.args.front());
        const auto cl = parse_command_line(row.args);
        REQUIRE(cl);
        CHECK(is_read_only(*cl) == row.read_only);
    }
}

TEST_CASE("an option the verb does not take is refused, naming the verbs that take it") {
    CHECK(refusal({"status", "--limit", "5"}) == "--limit applies to list and export only");
    CHECK(refusal({"status", "--body"}) == "--body applies to show only");
    CHECK(refusal({"list", "--all", "--yes"}) ==
          "--yes applies to hold, release, delete, flush, set-class, requeue and xfer only");
    CHECK(refusal({"export", "--all", "-y"}) ==
          "--yes applies to hold, release, delete, flush, set-class, requeue and xfer only");
    CHECK(refusal({"pause", "--json"}) ==
          "--json applies to status, list, show, hold, release, delete, flush, set-class, "
          "requeue, check, fleet and xfer only");
    CHECK(refusal({"import", "m.eml", "--sender", "a@b.example"}) ==
          "--sender applies to list, hold, release, delete, flush, set-class, requeue, export "
          "and xfer only");
    CHECK(refusal({"--mailstore", "x", "resume", "--repair"}) == "--repair applies to check only");
}

TEST_CASE("each verb takes the options it uses") {
    const std::vector<std::vector<std::string>> accepted = {
        {"status", "--json"},
        {"list",         "--class", "bulk",        "--state",    "ready",        "--held",
         "--sender",     "a@b",     "--recipient", "@c",         "--older-than", "1h",
         "--newer-than", "2h",      "--min-size",  "1KiB",       "--max-size",   "5MiB",
         "--limit",      "3",       "--json",      "--no-header"},
        {"list", "--all"},
        {"show", "X", "--body", "--json"},
        {"hold", "--held", "--json", "--yes"},
        {"release", "--all", "--json", "-y"},
        {"delete", "--sender", "a@b", "--yes", "--json"},
        {"flush", "--recipient", "a@b", "--json", "--yes"},
        {"set-class", "--all", "bulk", "--json", "--yes"},
        {"requeue", "--class", "bulk", "--older-than", "1d", "--json", "--yes"},
        {"pause", "--mailstore", "local"},
        {"resume", "--mailstore", "local"},
        {"export", "--all", "--limit", "2", "--dir", "d", "--mbox", "m", "--append",
         "--with-envelope"},
        {"import", "--mbox", "m", "--to", "a@b", "--from", "<>", "--class", "bulk"},
        {"check", "--bodies", "--repair", "--json"},
        {"--spool", "/s", "--config", "c.yaml", "status"},
    };
    for (const auto& args : accepted) {
        CAPTURE(args.front());
        const auto cl = parse_command_line(args);
        CHECK(cl.has_value());
    }
}

TEST_CASE("help wins over the option set, and needs no spool verb") {
    const auto cl = parse_command_line({"status", "--body", "--help"});
    REQUIRE(cl);
    CHECK(cl->help);
    const auto said = parse_command_line({"help"});
    REQUIRE(said);
    CHECK(said->help);
}

TEST_CASE("--help lists every verb in table order, its help from column 34 or below it") {
    const std::string text = usage();
    std::size_t pos = 0;
    for (const Verb& v : verbs()) {
        CAPTURE(v.name);
        const std::string line_start = "\n  " + std::string(v.synopsis);
        const auto at = text.find(line_start, pos);
        REQUIRE(at != std::string::npos);
        pos = at + line_start.size();
        if (v.help.empty()) {
            CHECK(text[pos] == '\n');
            continue;
        }
        const std::string first_help(v.help.substr(0, v.help.find('\n')));
        const auto help_at = text.find(first_help, pos);
        REQUIRE(help_at != std::string::npos);
        const auto line_begin = text.rfind('\n', help_at) + 1;
        CHECK(help_at - line_begin == 34);
    }
    CHECK(text.find("  status [--json]                 messages and bytes per class") !=
          std::string::npos);
    CHECK(text.find("  list [FILTER] [--limit N] [--json] [--no-header]\n" + std::string(34, ' ') +
                    "one line") != std::string::npos);
}
