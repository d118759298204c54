// Process-wide metrics: counters, gauges and histograms any thread updates with one atomic
// operation, rendered in the Prometheus text format, plus a one-hour in-memory History for
// the status page. No HTTP here (daemon/http serves it) and no persistence: a restart resets.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.hpp"

namespace spoold::metrics {

// Monotonic count. Updates are relaxed atomics: a scrape may see one counter a few
// increments ahead of another, which Prometheus tolerates.
class Counter {
public:
    void inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
    std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> value_{0};
};

// A value that goes up and down; double because rates and ages are fractional and a
// double holds every integer gauge we have (< 2^53) exactly.
class Gauge {
public:
    void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
    void add(double d) noexcept { value_.fetch_add(d, std::memory_order_relaxed); }
    void sub(double d) noexcept { value_.fetch_sub(d, std::memory_order_relaxed); }
    double value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<double> value_{0.0};
};

// Fixed upper bounds chosen at registration; one atomic count per bucket (not cumulative,
// so observe() touches one bucket) and a running sum. Rendering makes them cumulative.
class Histogram {
public:
    // `bounds` strictly increasing and finite; +Inf is implicit. Throws std::invalid_argument.
    explicit Histogram(std::vector<double> bounds);
    void observe(double v) noexcept;

    const std::vector<double>& bounds() const { return bounds_; }
    // Cumulative counts, one per bound and a last one for +Inf (== count()).
    std::vector<std::uint64_t> cumulative_counts() const;
    std::uint64_t count() const;
    double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }

private:
    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> counts_; // bounds_.size() + 1
    std::atomic<double> sum_{0.0};
};

enum class Kind { kCounter, kGauge, kHistogram };

// One metric name with its HELP text and label names; one child per label-value tuple.
class FamilyBase {
public:
    FamilyBase(std::string name, std::string help, std::vector<std::string> label_names, Kind kind);
    virtual ~FamilyBase() = default;
    FamilyBase(const FamilyBase&) = delete;
    FamilyBase& operator=(const FamilyBase&) = delete;

    const std::string& name() const { return name_; }
    const std::vector<std::string>& label_names() const { return label_names_; }
    Kind kind() const { return kind_; }
    // Appends HELP, TYPE and one sample line per child (children ordered by label values).
    void render(std::string& out) const;

protected:
    virtual void render_children(std::string& out) const = 0;
    // `name{k1="v1",k2="v2"}` with `extra` (for `le`) appended inside the braces.
    void append_series(std::string& out, std::string_view suffix,
                       const std::vector<std::string>& values, std::string_view extra = {}) const;

    mutable std::mutex mutex_; // guards children: creation and rendering, never updates

private:
    std::string name_;
    std::string help_;
    std::vector<std::string> label_names_;
    Kind kind_;
};

// with() takes a lock and may allocate: call it at set-up (or once per new label value)
// and keep the reference, which stays valid as long as the Registry; updating it is lock-free.
template <typename Metric> class Family final : public FamilyBase {
public:
    Family(std::string name, std::string help, std::vector<std::string> label_names,
           std::vector<double> bounds = {});
    // One value per label name, in order; throws std::invalid_argument on a count mismatch.
    Metric& with(const std::vector<std::string>& label_values);

private:
    void render_children(std::string& out) const override;

    std::vector<double> bounds_; // histograms only
    std::map<std::vector<std::string>, std::unique_ptr<Metric>> children_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// Owns the families. Registering a name again with the same kind and label names returns
// the existing family; any other clash, or an invalid name, throws std::invalid_argument
// (a programming error found at start-up).
class Registry {
public:
    Registry() = default;
    Registry(const Registry&) = delete;
    Registry& operator=(const Registry&) = delete;

    CounterFamily& counter_family(std::string name, std::string help,
                                  std::vector<std::string> label_names);
    GaugeFamily& gauge_family(std::string name, std::string help,
                              std::vector<std::string> label_names);
    HistogramFamily& histogram_family(std::string name, std::string help,
                                      std::vector<std::string> label_names,
                                      std::vector<double> bounds);
    // Unlabelled shorthands: the family's only child, created (and so rendered as 0) now.
    Counter& counter(std::string name, std::string help);
    Gauge& gauge(std::string name, std::string help);
    Histogram& histogram(std::string name, std::string help, std::vector<double> bounds);

    // Text exposition format 0.0.4, families in registration order.
    std::string render_prometheus() const;

private:
    template <typename F>
    F& add(std::string name, std::string help, std::vector<std::string> label_names, Kind kind,
           std::vector<double> bounds);

    mutable std::mutex mutex_;
    std::vector<std::unique_ptr<FamilyBase>> families_;
};

// The process-wide registry /metrics renders.
Registry& global();

// Text helpers, public for tests and for the status JSON.
std::string escape_label_value(std::string_view v); // backslash, double quote, newline
std::string escape_help(std::string_view v);        // backslash, newline
std::string format_value(double v);                 // shortest round-trip; +Inf, -Inf, NaN

// Breaker state as a gauge value and in the History; ordered so max() is "worst".
enum class BreakerLevel : std::uint8_t { kClosed = 0, kHalfOpen = 1, kOpen = 2 };
std::string_view to_string(BreakerLevel b); // "closed", "half-open", "open"

// Label values the daemon uses, so dashboards and code agree on spelling.
inline constexpr std::string_view kStateReady = "ready";
inline constexpr std::string_view kStateDeferred = "deferred";
inline constexpr std::string_view kStateHeld = "held";
inline constexpr std::string_view kOutcomeDelivered = "delivered";
inline constexpr std::string_view kOutcomeDeferred = "deferred";
inline constexpr std::string_view kOutcomeFailed = "failed";
// Rejection reasons (label `reason`); the daemon may add others, in snake_case.
inline constexpr std::string_view kRejectUnknownRecipient = "unknown_recipient";
inline constexpr std::string_view kRejectRelayDenied = "relay_denied";
inline constexpr std::string_view kRejectSpoolFull = "spool_full";
inline constexpr std::string_view kRejectTooBig = "too_big";
inline constexpr std::string_view kRejectProtocol = "protocol";
inline constexpr std::string_view kRejectRateLimit = "rate_limit";
inline constexpr std::string_view kRejectLocalError = "local_error";

// Every metric the daemon exports, declared in one place. Names are spoold_*; the
// families are registered in `registry` on construction (once per registry).
struct SpooldMetrics {
    explicit SpooldMetrics(Registry& registry);

    // smtp/
    Counter& smtp_connections_total; // spoold_smtp_connections_total
    // spoold_smtp_connections_open: not plain "spoold_smtp_connections", the name
    // OpenMetrics parsers give the counter above once they strip "_total".
    Gauge& smtp_connections;
    CounterFamily& messages_accepted_total; // {class}: one per message committed, 250 sent
    CounterFamily& messages_rejected_total; // {reason}: kReject* values
    Counter& accepted_bytes_total;          // spoold_accepted_bytes_total (message bytes)
    // spool/, set by the daemon from the spool counters every second
    GaugeFamily& spool_messages; // {class, state}: kState* values
    GaugeFamily& spool_bytes;    // {class, state}: kState* values
    Gauge& spool_oldest_message_age_seconds;
    // Space, with the limits admission refuses mail at (452 4.3.1), so alerts need no copy
    // of the configuration: used above accept_limit, or disk_free below min_free_disk.
    Gauge& spool_used_bytes;            // B-tree pages in use
    Gauge& spool_accept_limit_bytes;    // spool.max_size x spool.high_watermark
    Gauge& spool_disk_free_bytes;       // free disk plus the data file's reusable pages
    Gauge& spool_min_free_disk_bytes;   // spool.min_free_disk
    Histogram& commit_batch_size;       // operations per group commit
    Histogram& commit_duration_seconds; // one LMDB write transaction incl. fsync
    // drain/
    CounterFamily& deliveries_total;          // {mailstore, outcome}: per recipient, kOutcome*
    GaugeFamily& breaker_state;               // {mailstore}: BreakerLevel as 0, 1, 2
    CounterFamily& breaker_transitions_total; // {mailstore, to}: to = to_string(BreakerLevel)
    Gauge& drain_rate;                        // spoold_drain_rate_messages_per_second
    Gauge& drain_paused;                      // 1 while the whole drain is paused, else 0
    GaugeFamily& concurrency_limit;           // {mailstore}: pacing's current limit
    GaugeFamily& concurrency_in_use;          // {mailstore}: deliveries in flight
    // fleet/
    GaugeFamily& fleet_fallback;          // {mailstore}: 1 while Redis is unreachable
    CounterFamily& fleet_fallbacks_total; // {mailstore}: times the fallback share began
    GaugeFamily& fleet_concurrency;       // {mailstore}: this node's slots of the budget
    Counter& fleet_redis_requests_total;  // requests sent to Redis (round trips)
    Gauge& fleet_live_nodes;              // nodes whose status has not expired
    Counter& dsns_held_total; // spoold_dsns_held_total: DSNs the smarthost refused, held
};

// SpooldMetrics over global(), constructed on first use.
SpooldMetrics& spoold_metrics();

inline constexpr std::int64_t kRateWindowMs = 60'000;

// Events per second from a monotonic count sampled on the daemon's tick (e.g. a Counter's
// value), over a sliding window so a burst shows for a minute and fades instead of the
// figure flapping every second. Not thread-safe: one ticking thread owns it.
class RateMeter {
public:
    explicit RateMeter(std::int64_t window_ms = kRateWindowMs);
    // Records `count` at `t_ms` and returns the rate over the window ending there. A count
    // or clock that went backwards (restart, clock step) starts the window afresh.
    double update(UnixMillis t_ms, std::uint64_t count);
    double rate() const;

private:
    std::int64_t window_ms_;
    std::deque<std::pair<UnixMillis, std::uint64_t>> samples_;
};

// One point of the status page's charts.
struct HistorySample {
    UnixMillis t_ms = 0;
    // Messages waiting to drain (ready + deferred) per class, in config order.
    std::vector<std::pair<std::string, std::uint64_t>> backlog;
    double ingest_rate = 0;                       // messages accepted per second
    double drain_rate = 0;                        // messages delivered per second
    BreakerLevel breaker = BreakerLevel::kClosed; // worst over all mailstores
};

inline constexpr std::size_t kHistoryCapacity = 720;      // one hour ...
inline constexpr std::int64_t kHistoryIntervalMs = 5'000; // ... at one sample per 5 s

// A bounded ring of samples, oldest dropped first. Thread-safe (a mutex: written every
// few seconds, read per /status request, so no need for anything cleverer).
class History {
public:
    explicit History(std::size_t capacity = kHistoryCapacity,
                     std::int64_t min_interval_ms = kHistoryIntervalMs);

    // Keeps the sample when it is the first or at least min_interval after the last kept
    // one, so the daemon can offer one every tick. Returns whether it was kept.
    bool offer(HistorySample sample);
    // Keeps it unconditionally.
    void push(HistorySample sample);
    std::vector<HistorySample> snapshot() const; // oldest first
    std::size_t size() const;
    std::size_t capacity() const { return capacity_; }

private:
    std::size_t capacity_;
    std::int64_t min_interval_ms_;
    mutable std::mutex mutex_;
    std::deque<HistorySample> samples_;
};

} // namespace spoold::metrics
