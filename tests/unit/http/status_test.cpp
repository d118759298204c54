#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "common/json.hpp"
#include "daemon/http/page.hpp"
#include "daemon/http/status.hpp"

using namespace spoold;
using namespace spoold::http;

namespace {
std::string json_string(std::string_view s) { return json::quoted(s, true); }
} // namespace

TEST_CASE("JSON strings escape quotes, backslashes, control bytes and '<'") {
    CHECK(json_string("plain") == "\"plain\"");
    CHECK(json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
    CHECK(json_string("l1\nl2\r\t") == "\"l1\\nl2\\r\\t\"");
    CHECK(json_string(std::string_view("\x01\x1f\x7f", 3)) == "\"\\u0001\\u001f\\u007f\"");
    CHECK(json_string(std::string_view("a\0b", 3)) == "\"a\\u0000b\"");
    CHECK(json_string("</script>") == "\"\\u003c/script>\"");
}

TEST_CASE("JSON strings keep valid UTF-8 and replace invalid bytes with U+FFFD") {
    CHECK(json_string("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x93\xA8") ==
          "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x93\xA8\"");
    CHECK(json_string("a\xFF"
                      "b") == "\"a\xEF\xBF\xBD"
                              "b\"");
    CHECK(json_string("\xC3") == "\"\xEF\xBF\xBD\"");                 // truncated sequence
    CHECK(json_string("\xC0\xAF") == "\"\xEF\xBF\xBD\xEF\xBF\xBD\""); // overlong '/'
    CHECK(json_string("\xED\xA0\x80") == "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""); // surrogate
}

TEST_CASE("JSON numbers that are not finite become null") {
    json::Writer w(true);
    w.begin_array();
    w.value(std::numeric_limits<double>::infinity()).value(std::nan("")).value(2.5);
    w.end_array();
    CHECK(w.str() == "[null,null,2.5]");
}

TEST_CASE("status_json writes the documented shape with totals, backlog and the drain estimate") {
    StatusSnapshot st;
    st.version = "0.1.0";
    st.now_ms = 1'700'000'000'000;
    st.uptime_s = 12.5;
    st.classes = {{"urgent", 10, 5, 1, 4096}, {"bulk", 100, 0, 0, 1024}};
    st.oldest_age_s = 60;
    st.mailstores = {{"dovecot", metrics::BreakerLevel::kHalfOpen, 4, 1, 0.5}};
    st.ingest_rate = 1.5;
    st.drain_rate = 23; // backlog 115 -> 5 s
    metrics::HistorySample h;
    h.t_ms = 1'699'999'995'000;
    h.backlog = {{"urgent", 15}, {"bulk", 100}};
    h.ingest_rate = 1.5;
    h.drain_rate = 23;
    h.breaker = metrics::BreakerLevel::kOpen;
    st.history = {h};

    CHECK(
        status_json(st) ==
        "{\"version\":\"0.1.0\",\"now_ms\":1700000000000,\"uptime_s\":12.5,\"paused\":false,"
        "\"classes\":[{\"name\":\"urgent\",\"ready\":10,\"deferred\":5,\"held\":1,\"bytes\":4096},"
        "{\"name\":\"bulk\",\"ready\":100,\"deferred\":0,\"held\":0,\"bytes\":1024}],"
        "\"total_messages\":116,\"backlog\":115,\"total_bytes\":5120,\"oldest_age_s\":60,"
        "\"mailstores\":[{\"name\":\"dovecot\",\"breaker\":\"half-open\",\"breaker_level\":1,"
        "\"concurrency_limit\":4,\"in_flight\":1,\"rate\":0.5}],"
        "\"ingest_rate\":1.5,\"drain_rate\":23,\"drain_eta_s\":5,"
        "\"history\":[{\"t\":1699999995000,\"backlog\":{\"urgent\":15,\"bulk\":100},"
        "\"ingest\":1.5,\"drain\":23,\"breaker\":2}],\"fleet\":null}");
}

TEST_CASE("with a fleet, its view is the fleet member as it is") {
    StatusSnapshot st;
    st.fleet_json = R"({"now_ms":1,"nodes":[]})";
    const auto json = status_json(st);
    CHECK(json.ends_with("\"fleet\":" + st.fleet_json + "}"));
}

TEST_CASE("the drain estimate is null while nothing drains") {
    StatusSnapshot st;
    st.classes = {{"normal", 3, 0, 0, 0}};
    const auto json = status_json(st);
    CHECK(json.find("\"drain_eta_s\":null") != std::string::npos);
    CHECK(json.find("\"history\":[]") != std::string::npos);
    CHECK(json.find("\"mailstores\":[]") != std::string::npos);
}

TEST_CASE("class and mailstore names are escaped in every place they appear") {
    StatusSnapshot st;
    st.classes = {{"we\"ird", 1, 0, 0, 0}};
    metrics::HistorySample h;
    h.backlog = {{"we\"ird", 1}};
    st.history = {h};
    const auto json = status_json(st);
    CHECK(json.find("\"name\":\"we\\\"ird\"") != std::string::npos);
    CHECK(json.find("{\"we\\\"ird\":1}") != std::string::npos);
}

TEST_CASE("the embedded page is self-contained") {
    const std::string_view page = status_page_html();
    CHECK(page.starts_with("<!doctype html>"));
    CHECK(page.find("</html>") != std::string_view::npos);
    // No outside resources: no external scripts, styles, fonts or images.
    CHECK(page.find("<link") == std::string_view::npos);
    CHECK(page.find("src=") == std::string_view::npos);
    CHECK(page.find("@import") == std::string_view::npos);
    CHECK(page.find("url(") == std::string_view::npos);
    CHECK(page.find("https://") == std::string_view::npos);
    CHECK(page.find("fetch(\"status\"") != std::string_view::npos);
}
