#include <doctest/doctest.h>

#include <string>

#include "common/metrics.hpp"
#include "daemon/status_reporter.hpp"

using namespace spoold;

namespace {

bool has_line(const std::string& text, const std::string& line) {
    return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

} // namespace

TEST_CASE("spool messages and bytes are exported per class and state") {
    policy::Config config; // urgent, normal, bulk
    spool::Counters counters;
    const auto ready = static_cast<std::size_t>(spool::MsgState::kReady);
    const auto deferred = static_cast<std::size_t>(spool::MsgState::kDeferred);
    const auto held = static_cast<std::size_t>(spool::MsgState::kHeld);
    counters.messages[1][ready] = 2;
    counters.bytes[1][ready] = 3000;
    counters.messages[1][deferred] = 1;
    counters.bytes[1][deferred] = 700;
    counters.messages[2][held] = 4;
    counters.bytes[2][held] = 40960;
    const drain::DrainSnapshot snapshot;

    daemon::StatusInputs in;
    in.now_ms = 1'000'000;
    in.config = &config;
    in.counters = &counters;
    in.drain = &snapshot;
    daemon::StatusReporter reporter(in.now_ms);
    reporter.sample(in);

    const std::string text = metrics::global().render_prometheus();
    CHECK(has_line(text, R"(spoold_spool_messages{class="normal",state="ready"} 2)"));
    CHECK(has_line(text, R"(spoold_spool_bytes{class="normal",state="ready"} 3000)"));
    CHECK(has_line(text, R"(spoold_spool_bytes{class="normal",state="deferred"} 700)"));
    CHECK(has_line(text, R"(spoold_spool_bytes{class="normal",state="held"} 0)"));
    CHECK(has_line(text, R"(spoold_spool_bytes{class="bulk",state="held"} 40960)"));
    CHECK(has_line(text, R"(spoold_spool_bytes{class="urgent",state="ready"} 0)"));
    CHECK(text.find("spoold_spool_bytes{class=\"normal\"}") == std::string::npos);
    // /status keeps one byte total per class.
    CHECK(reporter.json().find(R"("name":"normal","ready":2,"deferred":1,"held":0,"bytes":3700)") !=
          std::string::npos);
}
