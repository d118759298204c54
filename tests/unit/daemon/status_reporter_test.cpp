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

TEST_CASE("spool space is exported with the limits admission refuses at, and the drain's pause") {
    policy::Config config;
    config.spool.high_watermark = 0.75;
    config.spool.min_free_disk = 5000;
    const spool::Counters counters;
    drain::DrainSnapshot snapshot;
    snapshot.paused = true;

    daemon::StatusInputs in;
    in.now_ms = 1'000'000;
    in.config = &config;
    in.counters = &counters;
    in.drain = &snapshot;
    in.space = spool::SpaceInfo{1'000'000, 400'000, 90'000};
    daemon::StatusReporter reporter(in.now_ms);
    reporter.sample(in);

    const std::string text = metrics::global().render_prometheus();
    CHECK(has_line(text, "spoold_spool_used_bytes 400000"));
    CHECK(has_line(text, "spoold_spool_accept_limit_bytes 750000"));
    CHECK(has_line(text, "spoold_spool_disk_free_bytes 90000"));
    CHECK(has_line(text, "spoold_spool_min_free_disk_bytes 5000"));
    CHECK(has_line(text, "spoold_drain_paused 1"));
    CHECK(daemon::accept_limit_bytes(*in.space, config.spool) == 750'000);
}
