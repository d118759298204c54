#include <doctest/doctest.h>

#include "tools/spoolctl/cli.hpp"

using namespace spoold;
using namespace spoold::spoolctl;

TEST_CASE("global options, verb, filter options and operands parse in any order") {
    const auto cl =
        parse_command_line({"list", "--spool", "/s", "--recipient=@x.example", "--older-than", "2h",
                            "--state", "deferred", "--limit", "100", "--json", "--class", "bulk"});
    REQUIRE(cl);
    CHECK(cl->spool_path == "/s");
    CHECK(cl->verb == "list");
    CHECK(cl->filter.recipients.size() == 1);
    CHECK(cl->filter.older_than_ms == 2 * 3'600'000);
    CHECK(cl->filter.state == spool::MsgState::kDeferred);
    CHECK(cl->limit == std::size_t{100});
    CHECK(cl->json);
    CHECK(cl->class_filter == std::optional<std::string>("bulk"));
}

TEST_CASE("operands after the verb are kept in order, also after --") {
    const auto cl =
        parse_command_line({"--config", "c.yaml", "set-class", "AAA", "BBB", "--", "-odd", "bulk"});
    REQUIRE(cl);
    CHECK(cl->config_path == "c.yaml");
    CHECK(cl->operands == std::vector<std::string>{"AAA", "BBB", "-odd", "bulk"});
}

TEST_CASE("import takes repeated and comma-separated --to and the null sender") {
    const auto cl =
        parse_command_line({"import", "--to", "a@x,b@y", "--to=c@z", "--from", "<>", "m.eml"});
    REQUIRE(cl);
    CHECK(cl->to == std::vector<std::string>{"a@x", "b@y", "c@z"});
    CHECK(cl->from == std::optional<std::string>(""));
}

TEST_CASE("bad command lines get a message that names the problem") {
    auto err = [](std::vector<std::string> args) {
        const auto cl = parse_command_line(args);
        REQUIRE_FALSE(cl);
        CHECK(cl.error().kind == ErrorKind::kInvalid);
        return cl.error().message;
    };
    CHECK(err({}).find("no verb") != std::string::npos);
    CHECK(err({"frobnicate"}).find("unknown verb") != std::string::npos);
    CHECK(err({"list", "--bogus"}).find("unknown option --bogus") != std::string::npos);
    CHECK(err({"list", "--limit"}).find("needs a value") != std::string::npos);
    CHECK(err({"list", "--limit", "ten"}).find("expected a number") != std::string::npos);
    CHECK(err({"list", "--older-than", "2x"}).find("duration") != std::string::npos);
    CHECK(err({"list", "--state", "lost"}).find("ready, deferred or held") != std::string::npos);
    CHECK(err({"list", "--sender", "a@"}).find("address") != std::string::npos);
    CHECK(err({"delete", "--all", "--sender", "a@b"}).find("--all") != std::string::npos);
    CHECK(err({"list", "--json=1"}).find("takes no value") != std::string::npos);
}

TEST_CASE("durations and sizes are read in the configuration's dialect") {
    const auto cl = parse_command_line({"list", "--older-than", "90s", "--newer-than", "1w",
                                        "--min-size", "10KiB", "--max-size", "5MB"});
    REQUIRE(cl);
    CHECK(cl->filter.older_than_ms == 90'000);
    CHECK(cl->filter.newer_than_ms == 7 * 86'400'000LL);
    CHECK(cl->filter.min_size == std::uint64_t{10 * 1024});
    CHECK(cl->filter.max_size == std::uint64_t{5'000'000});
    const auto bare_size = parse_command_line({"list", "--min-size", "512"});
    REQUIRE(bare_size);
    CHECK(bare_size->filter.min_size == std::uint64_t{512});

    auto err = [](std::vector<std::string> args) {
        const auto c = parse_command_line(args);
        REQUIRE_FALSE(c);
        CHECK(c.error().kind == ErrorKind::kInvalid);
        return c.error().message;
    };
    // A bare number could be seconds or days: refused, naming the units that are taken.
    CHECK(err({"list", "--older-than", "45"}) ==
          "--older-than 45: duration needs a unit (ms, s, m, h, d, w): \"45\"");
    CHECK(err({"list", "--min-size", "5M"}).find("unknown size unit \"m\"") != std::string::npos);
    CHECK(err({"list", "--older-than", "1d12h"}).find("unknown duration unit") !=
          std::string::npos);
    CHECK(err({"list", "--older-than", "-2h"}).find("must start with a number") !=
          std::string::npos);
}

TEST_CASE("help needs no verb") {
    const auto cl = parse_command_line({"--help"});
    REQUIRE(cl);
    CHECK(cl->help);
    CHECK(usage().find("X-Spoold-Envelope-To") != std::string::npos);
}
