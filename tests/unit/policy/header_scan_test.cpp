#include <doctest/doctest.h>

#include <string>

#include "policy/header_scan.hpp"

using namespace spoold::policy;

TEST_CASE("header fields are unfolded and the scan stops at the blank line") {
    const std::string message = "Subject: hello\r\n"
                                "  world\r\n"
                                "X-Priority:1 (Highest)\r\n"
                                "List-Id: <news.example.com>\r\n"
                                "\r\n"
                                "Precedence: bulk\r\n";
    const auto fields = scan_headers(message);
    REQUIRE(fields.size() == 3);
    CHECK(fields[0].name == "Subject");
    CHECK(fields[0].value == "hello world");
    CHECK(fields[1].value == "1 (Highest)");
    CHECK(fields[2].name == "List-Id");
}

TEST_CASE("header scanning tolerates bare LF and garbage lines") {
    const std::string message = "  orphan continuation\n"
                                "no colon here\n"
                                "Bad Name: x\n"
                                ": empty name\n"
                                "Good : obsolete blank before colon\n"
                                "\x01\xff: binary\n"
                                "Last: one";
    const auto fields = scan_headers(message);
    REQUIRE(fields.size() == 2);
    CHECK(fields[0].name == "Good");
    CHECK(fields[0].value == "obsolete blank before colon");
    CHECK(fields[1].name == "Last");
    CHECK(fields[1].value == "one");
}

TEST_CASE("header scanning never reads beyond the bound") {
    const std::string message = "A: 1\r\nB: 2\r\nC: 3333333333\r\n\r\n";
    // The bound ends inside "C": C is dropped, not truncated.
    const auto fields = scan_headers(std::string_view(message), 16);
    REQUIRE(fields.size() == 2);
    CHECK(fields[1].name == "B");
    // One endless line: nothing within the bound is a complete field.
    const std::string big(100'000, 'x');
    CHECK(scan_headers(big, 1024).empty());
    CHECK(scan_headers("", 1024).empty());
}

TEST_CASE("header names compare case-insensitively") {
    CHECK(header_name_equal("List-ID", "list-id"));
    CHECK_FALSE(header_name_equal("List-Id", "List-Ids"));
}
