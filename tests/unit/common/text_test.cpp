#include <doctest/doctest.h>

#include <string_view>

#include "common/text.hpp"

using namespace spoold;

TEST_CASE("trim removes spaces and tabs from both ends and nothing inside") {
    CHECK(ascii::trim("  a b\t") == "a b");
    CHECK(ascii::trim("\t \t") == "");
    CHECK(ascii::trim("") == "");
    CHECK(ascii::trim("x") == "x");
    CHECK(ascii::trim(" a\r") == "a\r"); // a CR is no blank unless asked for
}

TEST_CASE("trim_left and trim_right touch one end only") {
    CHECK(ascii::trim_left(" \ta ") == "a ");
    CHECK(ascii::trim_right(" a \t") == " a");
    CHECK(ascii::trim_left("   ") == "");
    CHECK(ascii::trim_right("   ") == "");
}

TEST_CASE("trim takes the set of characters to remove") {
    CHECK(ascii::trim(" a \r", ascii::kBlanksCr) == "a");
    CHECK(ascii::trim_right("From: x\r\n", " \t\r\n") == "From: x");
    CHECK(ascii::trim("xxaxx", "x") == "a");
    // Bytes past ASCII and NULs are ordinary characters.
    CHECK(ascii::trim(std::string_view(" \0\xc3\xa9 ", 5)) == std::string_view("\0\xc3\xa9", 3));
}
