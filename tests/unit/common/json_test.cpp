#include <doctest/doctest.h>

#include "common/json.hpp"

using namespace spoold;
using json::quoted;

TEST_CASE("json strings escape quotes, backslashes and control bytes") {
    CHECK(quoted("a\"b\\c") == R"("a\"b\\c")");
    CHECK(quoted("x\r\ny\t") == R"("x\r\ny\t")");
    CHECK(quoted(std::string_view("\x01\x7f", 2)) == R"("\u0001\u007f")");
}

TEST_CASE("json strings keep valid UTF-8 and replace invalid bytes") {
    CHECK(quoted("caf\xC3\xA9") == "\"caf\xC3\xA9\"");
    CHECK(quoted("a\xFF"
                 "b") == "\"a\xEF\xBF\xBD"
                         "b\"");
    CHECK(quoted("\xC3") == "\"\xEF\xBF\xBD\"");                 // truncated sequence
    CHECK(quoted("\xC0\xAF") == "\"\xEF\xBF\xBD\xEF\xBF\xBD\""); // overlong '/'
    CHECK(quoted("\xED\xA0\x80") == "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""); // surrogate
}

TEST_CASE("json writer places commas between members and elements") {
    json::Writer w;
    w.begin_object();
    w.key("a").value(1);
    w.key("b").begin_array().value("x").value(true).null().end_array();
    w.key("c").begin_object().key("d").value(std::uint64_t{2}).end_object();
    w.key("e").value(0.5);
    w.end_object();
    CHECK(w.str() == R"({"a":1,"b":["x",true,null],"c":{"d":2},"e":0.5})");
}
