// A stand-in daemon for the page test: the real HttpServer, status_json() and
// metrics::History fed with a made-up hour-long outage, so the page, the CSP header and the
// JSON shape are checked together in Chromium. Not the daemon: nothing is spooled.
//
//     http_status_demo [PORT]    prints "listening PORT", serves 127.0.0.1 until SIGTERM/SIGINT
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"
#include "daemon/http/server.hpp"
#include "daemon/http/status.hpp"

namespace {

using spoold::metrics::BreakerLevel;

// The same numbers as fake_status.py, so page_test.py --expect works against either.
const std::vector<spoold::http::ClassStatus> kClasses = {
    {"urgent", 1234, 56, 0, 48'300'000},
    {"normal", 45678, 2100, 7, 1'950'000'000},
    {"bulk", 210987, 0, 120, 9'100'000'000},
};
constexpr double kDrainRate = 181.5;

void fill_history(spoold::metrics::History& history, spoold::UnixMillis now) {
    const auto n = static_cast<std::int64_t>(history.capacity());
    for (std::int64_t i = 0; i < n; ++i) {
        const double f = static_cast<double>(i) / static_cast<double>(n - 1);
        spoold::metrics::HistorySample s;
        s.t_ms = now - (n - 1 - i) * spoold::metrics::kHistoryIntervalMs;
        double grow = 1.15;
        if (f < 0.70) {
            grow = f / 0.70 * 1.15;
            s.breaker = BreakerLevel::kOpen;
        } else if (f < 0.75) {
            s.breaker = BreakerLevel::kHalfOpen;
            s.drain_rate = 20;
        } else {
            grow = 1.15 - (f - 0.75) / 0.25 * 0.15;
            s.drain_rate = 180 + 20 * std::sin(static_cast<double>(i) / 9);
        }
        for (const auto& c : kClasses) {
            s.backlog.emplace_back(c.name, static_cast<std::uint64_t>(
                                               static_cast<double>(c.ready + c.deferred) * grow));
        }
        s.ingest_rate = 75 + 25 * std::sin(static_cast<double>(i) / 25);
        history.push(std::move(s));
    }
}

} // namespace

int main(int argc, char** argv) {
    const auto port = static_cast<std::uint16_t>(argc > 1 ? std::atoi(argv[1]) : 0);
    const auto& clock = spoold::SystemClock::instance();
    const spoold::UnixMillis started = clock.now_ms();
    static spoold::metrics::History history; // outlives every request
    fill_history(history, started);
    // Something for /metrics to show, as the daemon's 1-second tick would set it.
    auto& m = spoold::metrics::spoold_metrics();
    for (const auto& c : kClasses) {
        m.spool_messages.with({c.name, std::string(spoold::metrics::kStateReady)})
            .set(static_cast<double>(c.ready));
        m.spool_bytes.with({c.name, std::string(spoold::metrics::kStateReady)})
            .set(static_cast<double>(c.bytes));
    }
    m.drain_rate.set(kDrainRate);
    m.breaker_state.with({"dovecot-b"}).set(static_cast<double>(BreakerLevel::kHalfOpen));

    boost::asio::io_context ioc;
    spoold::http::HttpServer server(ioc.get_executor(), "127.0.0.1", port, [&clock, started] {
        spoold::http::StatusSnapshot st;
        st.version = "0.1.0-demo";
        st.now_ms = clock.now_ms();
        st.uptime_s = static_cast<double>(st.now_ms - started) / 1000.0 + 2 * 86400 + 5 * 3600;
        st.classes = kClasses;
        st.oldest_age_s = 3 * 3600 + 1200;
        st.mailstores = {{"dovecot-a", BreakerLevel::kClosed, 32, 29, 120.5},
                         {"dovecot-b", BreakerLevel::kHalfOpen, 1, 1, 61.0}};
        st.ingest_rate = 74.2;
        st.drain_rate = kDrainRate;
        st.history = history.snapshot();
        return spoold::http::status_json(st);
    });
    const auto bound = server.start();
    if (!bound) {
        std::fprintf(stderr, "http_status_demo: %s\n", bound.error().describe().c_str());
        return 1;
    }
    std::printf("listening %u http://127.0.0.1:%u/\n", *bound, *bound);
    std::fflush(stdout);

    boost::asio::signal_set signals(ioc, SIGTERM, SIGINT);
    signals.async_wait([&server](const boost::system::error_code&, int) { server.stop(); });
    ioc.run();
    return 0;
}
