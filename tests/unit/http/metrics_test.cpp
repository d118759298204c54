#include <doctest/doctest.h>

#include <stdexcept>
#include <thread>
#include <vector>

#include "common/metrics.hpp"

using namespace spoold::metrics;

TEST_CASE("a small registry renders exactly in the Prometheus text format") {
    Registry r;
    r.counter("t_connections_total", "Connections accepted.").inc(3);
    auto& rejected = r.counter_family("t_rejected_total", "Refused, by reason.", {"reason"});
    rejected.with({"spool_full"}).inc();
    rejected.with({"relay_denied"}).inc(2);
    auto& spool = r.gauge_family("t_spool_messages", "Messages.", {"class", "state"});
    spool.with({"urgent", "ready"}).set(12);
    spool.with({"bulk", "held"}).set(0.5);
    r.gauge("t_empty", "Never set.");

    CHECK(r.render_prometheus() == "# HELP t_connections_total Connections accepted.\n"
                                   "# TYPE t_connections_total counter\n"
                                   "t_connections_total 3\n"
                                   "# HELP t_rejected_total Refused, by reason.\n"
                                   "# TYPE t_rejected_total counter\n"
                                   "t_rejected_total{reason=\"relay_denied\"} 2\n"
                                   "t_rejected_total{reason=\"spool_full\"} 1\n"
                                   "# HELP t_spool_messages Messages.\n"
                                   "# TYPE t_spool_messages gauge\n"
                                   "t_spool_messages{class=\"bulk\",state=\"held\"} 0.5\n"
                                   "t_spool_messages{class=\"urgent\",state=\"ready\"} 12\n"
                                   "# HELP t_empty Never set.\n"
                                   "# TYPE t_empty gauge\n"
                                   "t_empty 0\n");
}

TEST_CASE(
    "label values escape backslash, double quote and newline; help escapes backslash and newline") {
    Registry r;
    r.counter_family("t_total", "a \\ b\nc \"q\"", {"v"}).with({"x\\y\"z\nw"}).inc();
    CHECK(r.render_prometheus() == "# HELP t_total a \\\\ b\\nc \"q\"\n"
                                   "# TYPE t_total counter\n"
                                   "t_total{v=\"x\\\\y\\\"z\\nw\"} 1\n");
}

TEST_CASE("histograms render cumulative le buckets, +Inf, _sum and _count") {
    Registry r;
    auto& h = r.histogram("t_latency_seconds", "Latency.", {0.01, 0.5, 2});
    h.observe(0.005);
    h.observe(0.01); // equal to a bound: counted in that bound's bucket
    h.observe(1);
    h.observe(100);
    CHECK(h.count() == 4);
    CHECK(r.render_prometheus() == "# HELP t_latency_seconds Latency.\n"
                                   "# TYPE t_latency_seconds histogram\n"
                                   "t_latency_seconds_bucket{le=\"0.01\"} 2\n"
                                   "t_latency_seconds_bucket{le=\"0.5\"} 2\n"
                                   "t_latency_seconds_bucket{le=\"2\"} 3\n"
                                   "t_latency_seconds_bucket{le=\"+Inf\"} 4\n"
                                   "t_latency_seconds_sum 101.015\n"
                                   "t_latency_seconds_count 4\n");
}

TEST_CASE("labelled histograms put le after the family's labels") {
    Registry r;
    r.histogram_family("t_batch", "Batch.", {"writer"}, {1}).with({"main"}).observe(1);
    CHECK(r.render_prometheus() == "# HELP t_batch Batch.\n"
                                   "# TYPE t_batch histogram\n"
                                   "t_batch_bucket{writer=\"main\",le=\"1\"} 1\n"
                                   "t_batch_bucket{writer=\"main\",le=\"+Inf\"} 1\n"
                                   "t_batch_sum{writer=\"main\"} 1\n"
                                   "t_batch_count{writer=\"main\"} 1\n");
}

TEST_CASE("special gauge values use the Prometheus spellings") {
    CHECK(format_value(1.0 / 0.0) == "+Inf");
    CHECK(format_value(-1.0 / 0.0) == "-Inf");
    CHECK(format_value(0.0 / 0.0) == "NaN");
    CHECK(format_value(42) == "42");
    CHECK(format_value(-0.25) == "-0.25");
}

TEST_CASE("registering a name again returns the same family; a different shape throws") {
    Registry r;
    auto& a = r.counter_family("t_total", "x", {"k"});
    CHECK(&r.counter_family("t_total", "x", {"k"}) == &a);
    CHECK_THROWS_AS(r.counter_family("t_total", "x", {"other"}), std::invalid_argument);
    CHECK_THROWS_AS(r.gauge_family("t_total", "x", {"k"}), std::invalid_argument);
    CHECK_THROWS_AS(r.counter("9bad", "x"), std::invalid_argument);
    CHECK_THROWS_AS(r.counter_family("t_x", "x", {"bad-label"}), std::invalid_argument);
    CHECK_THROWS_AS(r.histogram_family("t_h", "x", {"le"}, {1}), std::invalid_argument);
    CHECK_THROWS_AS(r.histogram("t_h2", "x", {2, 1}), std::invalid_argument);
    CHECK_THROWS_AS(a.with({"1", "2"}), std::invalid_argument);
}

TEST_CASE("with() returns the same child for the same label values") {
    Registry r;
    auto& f = r.gauge_family("t_g", "g", {"k"});
    Gauge& g = f.with({"a"});
    g.set(5);
    g.add(1.5);
    g.sub(0.5);
    CHECK(&f.with({"a"}) == &g);
    CHECK(f.with({"a"}).value() == 6);
}

TEST_CASE("counters and histograms updated from many threads lose nothing") {
    Registry r;
    Counter& c = r.counter("t_total", "c");
    Histogram& h = r.histogram("t_h", "h", {1, 10});
    constexpr int kThreads = 4;
    constexpr int kEach = 10'000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < kEach; ++i) {
                c.inc();
                h.observe(i % 20);
            }
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    CHECK(c.value() == kThreads * kEach);
    CHECK(h.count() == kThreads * kEach);
}

TEST_CASE("SpooldMetrics registers every daemon metric once and renders them") {
    Registry r;
    SpooldMetrics m(r);
    SpooldMetrics again(r); // same registry: same families, no throw
    CHECK(&again.drain_rate == &m.drain_rate);
    m.spool_messages.with({"urgent", std::string(kStateReady)}).set(7);
    m.breaker_state.with({"dovecot"}).set(static_cast<double>(BreakerLevel::kOpen));
    m.commit_batch_size.observe(3);
    const auto text = r.render_prometheus();
    for (const char* needle : {"# TYPE spoold_smtp_connections_total counter",
                               "# TYPE spoold_smtp_connections_open gauge",
                               "# TYPE spoold_messages_accepted_total counter",
                               "# TYPE spoold_messages_rejected_total counter",
                               "spoold_accepted_bytes_total 0",
                               "spoold_spool_messages{class=\"urgent\",state=\"ready\"} 7",
                               "# TYPE spoold_spool_bytes gauge",
                               "spoold_spool_oldest_message_age_seconds 0",
                               "spoold_spool_commit_batch_size_bucket{le=\"4\"} 1",
                               "# TYPE spoold_spool_commit_duration_seconds histogram",
                               "# TYPE spoold_deliveries_total counter",
                               "spoold_breaker_state{mailstore=\"dovecot\"} 2",
                               "# TYPE spoold_breaker_transitions_total counter",
                               "spoold_drain_rate_messages_per_second 0",
                               "# TYPE spoold_drain_concurrency_limit gauge",
                               "# TYPE spoold_drain_in_flight gauge",
                               "# TYPE spoold_spool_used_bytes gauge",
                               "# TYPE spoold_spool_accept_limit_bytes gauge",
                               "# TYPE spoold_spool_disk_free_bytes gauge",
                               "# TYPE spoold_spool_min_free_disk_bytes gauge",
                               "spoold_drain_paused 0"}) {
        CAPTURE(needle);
        CHECK(text.find(needle) != std::string::npos);
    }
}

TEST_CASE("the process-wide registry is one object") {
    CHECK(&global() == &global());
    CHECK(&spoold_metrics() == &spoold_metrics());
}

namespace {
HistorySample sample_at(spoold::UnixMillis t, std::uint64_t urgent) {
    HistorySample s;
    s.t_ms = t;
    s.backlog = {{"urgent", urgent}};
    return s;
}
} // namespace

TEST_CASE("History keeps at most its capacity, dropping the oldest first") {
    History h(3, 0);
    for (int i = 0; i < 5; ++i) {
        h.push(sample_at(i * 1000, static_cast<std::uint64_t>(i)));
    }
    CHECK(h.size() == 3);
    const auto s = h.snapshot();
    REQUIRE(s.size() == 3);
    CHECK(s.front().backlog[0].second == 2);
    CHECK(s.back().backlog[0].second == 4);
}

TEST_CASE("History::offer keeps one sample per interval") {
    History h(kHistoryCapacity, kHistoryIntervalMs);
    CHECK(h.offer(sample_at(0, 0)));
    CHECK_FALSE(h.offer(sample_at(1000, 1)));
    CHECK_FALSE(h.offer(sample_at(4999, 1)));
    CHECK(h.offer(sample_at(5000, 2)));
    CHECK(h.offer(sample_at(-60'000, 3))); // clock stepped back: cadence restarts
    CHECK_FALSE(h.offer(sample_at(-59'000, 4)));
    CHECK(h.size() == 3);
}

TEST_CASE("History default covers one hour at 5 s") {
    History h;
    for (int i = 0; i < 2000; ++i) {
        h.offer(sample_at(static_cast<spoold::UnixMillis>(i) * 5000, 1));
    }
    CHECK(h.size() == 720);
    const auto s = h.snapshot();
    CHECK(s.back().t_ms - s.front().t_ms == 719 * 5000);
}

TEST_CASE("RateMeter gives events per second over its sliding window") {
    RateMeter r(10'000);
    CHECK(r.update(0, 100) == 0); // one sample: no rate yet
    CHECK(r.update(1000, 110) == doctest::Approx(10));
    for (int s = 2; s <= 10; ++s) {
        r.update(s * 1000, 110 + static_cast<std::uint64_t>(s - 1) * 10);
    }
    CHECK(r.rate() == doctest::Approx(10));
    // Idle for the whole window: the rate decays to zero, not stuck at the last burst.
    for (int s = 11; s <= 21; ++s) {
        r.update(s * 1000, 200);
    }
    CHECK(r.rate() == doctest::Approx(0));
}

TEST_CASE("RateMeter restarts when the count or the clock goes backwards") {
    RateMeter r(10'000);
    r.update(0, 1000);
    r.update(1000, 1100);
    CHECK(r.update(2000, 5) == 0); // counter reset: no huge negative or wrapped rate
    CHECK(r.update(3000, 15) == doctest::Approx(10));
    CHECK(r.update(1000, 20) == 0); // clock stepped back
}
