#include <doctest/doctest.h>

#include "common/log.hpp"

using namespace spoold;

TEST_CASE("log values are quoted only when they need it") {
    CHECK(log::quote("abc") == "abc");
    CHECK(log::quote("") == "\"\"");
    CHECK(log::quote("a b") == "\"a b\"");
    CHECK(log::quote("a=b") == "\"a=b\"");
    CHECK(log::quote("say \"hi\"") == "\"say \\\"hi\\\"\"");
    CHECK(log::quote(std::string("x\r\ny")) == "\"x\\x0d\\x0ay\"");
}

TEST_CASE("log levels parse by name") {
    log::Level l = log::Level::kError;
    CHECK(log::parse_level("debug", l));
    CHECK(l == log::Level::kDebug);
    CHECK_FALSE(log::parse_level("loud", l));
}

TEST_CASE("log formats parse by name") {
    log::Format f = log::Format::kPostfix;
    CHECK(log::parse_format("keyvalue", f));
    CHECK(f == log::Format::kKeyValue);
    CHECK(log::parse_format("postfix", f));
    CHECK(f == log::Format::kPostfix);
    CHECK_FALSE(log::parse_format("syslog", f));
}
