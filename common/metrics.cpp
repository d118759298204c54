#include "common/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <stdexcept>

namespace spoold::metrics {
namespace {

bool valid_name(std::string_view name, bool allow_colon) {
    if (name.empty()) {
        return false;
    }
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                           (allow_colon && c == ':');
        const bool digit = c >= '0' && c <= '9';
        if (!alpha && !(digit && i > 0)) {
            return false;
        }
    }
    return true;
}

std::string_view type_name(Kind kind) {
    switch (kind) {
    case Kind::kCounter: return "counter";
    case Kind::kGauge: return "gauge";
    case Kind::kHistogram: return "histogram";
    }
    return "untyped";
}

template <typename Metric> std::unique_ptr<Metric> make_child(const std::vector<double>& bounds) {
    if constexpr (std::is_same_v<Metric, Histogram>) {
        return std::make_unique<Histogram>(bounds);
    } else {
        (void)bounds;
        return std::make_unique<Metric>();
    }
}

} // namespace

std::string escape_label_value(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (const char c : v) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '"': out += "\\\""; break;
        case '\n': out += "\\n"; break;
        default: out += c;
        }
    }
    return out;
}

std::string escape_help(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (const char c : v) {
        switch (c) {
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        default: out += c;
        }
    }
    return out;
}

std::string format_value(double v) {
    if (std::isnan(v)) {
        return "NaN";
    }
    if (std::isinf(v)) {
        return v > 0 ? "+Inf" : "-Inf";
    }
    // fmt's shortest round-trip form: "3", "0.25", "1e+20"; all valid Go ParseFloat input.
    return fmt::format("{}", v);
}

std::string_view to_string(BreakerLevel b) {
    switch (b) {
    case BreakerLevel::kClosed: return "closed";
    case BreakerLevel::kHalfOpen: return "half-open";
    case BreakerLevel::kOpen: return "open";
    }
    return "closed";
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
    for (std::size_t i = 0; i < bounds_.size(); ++i) {
        if (!std::isfinite(bounds_[i]) || (i > 0 && bounds_[i] <= bounds_[i - 1])) {
            throw std::invalid_argument("histogram bounds must be finite and strictly increasing");
        }
    }
    counts_ = std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1);
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
        counts_[i].store(0, std::memory_order_relaxed);
    }
}

void Histogram::observe(double v) noexcept {
    // Prometheus buckets are "le": a value equal to a bound belongs to that bound's bucket.
    const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), v);
    const auto index = static_cast<std::size_t>(it - bounds_.begin());
    counts_[index].fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(v, std::memory_order_relaxed);
}

std::vector<std::uint64_t> Histogram::cumulative_counts() const {
    std::vector<std::uint64_t> out(bounds_.size() + 1);
    std::uint64_t running = 0;
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
        running += counts_[i].load(std::memory_order_relaxed);
        out[i] = running;
    }
    return out;
}

std::uint64_t Histogram::count() const { return cumulative_counts().back(); }

FamilyBase::FamilyBase(std::string name, std::string help, std::vector<std::string> label_names,
                       Kind kind)
    : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)),
      kind_(kind) {
    if (!valid_name(name_, true)) {
        throw std::invalid_argument("invalid metric name: " + name_);
    }
    for (const auto& l : label_names_) {
        // "le" is reserved for histogram buckets, "__" prefixes for Prometheus itself.
        if (!valid_name(l, false) || l.starts_with("__") ||
            (kind == Kind::kHistogram && l == "le")) {
            throw std::invalid_argument("invalid label name for " + name_ + ": " + l);
        }
    }
}

void FamilyBase::render(std::string& out) const {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name_, escape_help(help_), name_,
                       type_name(kind_));
    const std::lock_guard lock(mutex_);
    render_children(out);
}

void FamilyBase::append_series(std::string& out, std::string_view suffix,
                               const std::vector<std::string>& values,
                               std::string_view extra) const {
    out += name_;
    out += suffix;
    if (label_names_.empty() && extra.empty()) {
        return;
    }
    out += '{';
    for (std::size_t i = 0; i < label_names_.size(); ++i) {
        if (i > 0) {
            out += ',';
        }
        out += fmt::format("{}=\"{}\"", label_names_[i], escape_label_value(values[i]));
    }
    if (!extra.empty()) {
        if (!label_names_.empty()) {
            out += ',';
        }
        out += extra;
    }
    out += '}';
}

template <typename Metric>
Family<Metric>::Family(std::string name, std::string help, std::vector<std::string> label_names,
                       std::vector<double> bounds)
    : FamilyBase(std::move(name), std::move(help), std::move(label_names),
                 std::is_same_v<Metric, Counter> ? Kind::kCounter
                 : std::is_same_v<Metric, Gauge> ? Kind::kGauge
                                                 : Kind::kHistogram),
      bounds_(std::move(bounds)) {
    if constexpr (std::is_same_v<Metric, Histogram>) {
        Histogram check(bounds_); // throws now, not at the first with()
    }
}

template <typename Metric>
Metric& Family<Metric>::with(const std::vector<std::string>& label_values) {
    if (label_values.size() != label_names().size()) {
        throw std::invalid_argument(fmt::format("{} takes {} label values, got {}", name(),
                                                label_names().size(), label_values.size()));
    }
    const std::lock_guard lock(mutex_);
    auto& slot = children_[label_values];
    if (!slot) {
        slot = make_child<Metric>(bounds_);
    }
    return *slot;
}

template <typename Metric> void Family<Metric>::render_children(std::string& out) const {
    for (const auto& [values, metric] : children_) {
        if constexpr (std::is_same_v<Metric, Histogram>) {
            const auto counts = metric->cumulative_counts();
            const auto& bounds = metric->bounds();
            for (std::size_t i = 0; i < counts.size(); ++i) {
                const std::string le = i < bounds.size() ? format_value(bounds[i]) : "+Inf";
                append_series(out, "_bucket", values, fmt::format("le=\"{}\"", le));
                out += fmt::format(" {}\n", counts[i]);
            }
            append_series(out, "_sum", values);
            out += fmt::format(" {}\n", format_value(metric->sum()));
            append_series(out, "_count", values);
            // The +Inf bucket, so _count always equals it even while observe() races.
            out += fmt::format(" {}\n", counts.back());
        } else if constexpr (std::is_same_v<Metric, Counter>) {
            append_series(out, "", values);
            out += fmt::format(" {}\n", metric->value());
        } else {
            append_series(out, "", values);
            out += fmt::format(" {}\n", format_value(metric->value()));
        }
    }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

template <typename F>
F& Registry::add(std::string name, std::string help, std::vector<std::string> label_names,
                 Kind kind, std::vector<double> bounds) {
    const std::lock_guard lock(mutex_);
    for (const auto& f : families_) {
        if (f->name() != name) {
            continue;
        }
        auto* same = dynamic_cast<F*>(f.get());
        if (same == nullptr || f->kind() != kind || f->label_names() != label_names) {
            throw std::invalid_argument("metric registered twice with different shapes: " + name);
        }
        return *same;
    }
    auto family = std::make_unique<F>(std::move(name), std::move(help), std::move(label_names),
                                      std::move(bounds));
    F& ref = *family;
    families_.push_back(std::move(family));
    return ref;
}

CounterFamily& Registry::counter_family(std::string name, std::string help,
                                        std::vector<std::string> label_names) {
    return add<CounterFamily>(std::move(name), std::move(help), std::move(label_names),
                              Kind::kCounter, {});
}

GaugeFamily& Registry::gauge_family(std::string name, std::string help,
                                    std::vector<std::string> label_names) {
    return add<GaugeFamily>(std::move(name), std::move(help), std::move(label_names), Kind::kGauge,
                            {});
}

HistogramFamily& Registry::histogram_family(std::string name, std::string help,
                                            std::vector<std::string> label_names,
                                            std::vector<double> bounds) {
    return add<HistogramFamily>(std::move(name), std::move(help), std::move(label_names),
                                Kind::kHistogram, std::move(bounds));
}

Counter& Registry::counter(std::string name, std::string help) {
    return counter_family(std::move(name), std::move(help), {}).with({});
}

Gauge& Registry::gauge(std::string name, std::string help) {
    return gauge_family(std::move(name), std::move(help), {}).with({});
}

Histogram& Registry::histogram(std::string name, std::string help, std::vector<double> bounds) {
    return histogram_family(std::move(name), std::move(help), {}, std::move(bounds)).with({});
}

std::string Registry::render_prometheus() const {
    std::string out;
    const std::lock_guard lock(mutex_);
    for (const auto& f : families_) {
        f->render(out);
    }
    return out;
}

Registry& global() {
    static Registry registry;
    return registry;
}

namespace {

// Powers of two: group commit batches range from 1 (idle) to max_batch (a flood).
std::vector<double> batch_bounds() { return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096}; }

// 0.5 ms (page cache, no fsync) to 5 s (a dying disk): an fsync on SSD is ~1-10 ms.
std::vector<double> commit_seconds_bounds() {
    return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
}

} // namespace

SpooldMetrics::SpooldMetrics(Registry& r)
    : smtp_connections_total(
          r.counter("spoold_smtp_connections_total", "SMTP connections accepted.")),
      smtp_connections(r.gauge("spoold_smtp_connections_open", "SMTP connections open now.")),
      messages_accepted_total(r.counter_family(
          "spoold_messages_accepted_total",
          "Messages committed to the spool and acknowledged with 250, by class.", {"class"})),
      messages_rejected_total(r.counter_family("spoold_messages_rejected_total",
                                               "Messages or recipients refused, by reason.",
                                               {"reason"})),
      accepted_bytes_total(r.counter("spoold_accepted_bytes_total",
                                     "Bytes of message data committed to the spool.")),
      spool_messages(r.gauge_family("spoold_spool_messages",
                                    "Messages in the spool, by class and state.",
                                    {"class", "state"})),
      spool_bytes(r.gauge_family("spoold_spool_bytes",
                                 "Bytes of messages in the spool, by class and state.",
                                 {"class", "state"})),
      spool_oldest_message_age_seconds(
          r.gauge("spoold_spool_oldest_message_age_seconds",
                  "Age of the oldest message in the spool (0 when empty).")),
      spool_used_bytes(
          r.gauge("spoold_spool_used_bytes", "Bytes of spool pages in use (LMDB B-trees).")),
      spool_accept_limit_bytes(
          r.gauge("spoold_spool_accept_limit_bytes",
                  "spool.max_size times spool.high_watermark: above it new mail gets 452.")),
      spool_disk_free_bytes(
          r.gauge("spoold_spool_disk_free_bytes",
                  "Free disk under the spool plus the data file's pages LMDB will reuse.")),
      spool_min_free_disk_bytes(
          r.gauge("spoold_spool_min_free_disk_bytes",
                  "spool.min_free_disk: with less free disk new mail gets 452.")),
      commit_batch_size(r.histogram("spoold_spool_commit_batch_size",
                                    "Operations applied per group commit.", batch_bounds())),
      commit_duration_seconds(r.histogram("spoold_spool_commit_duration_seconds",
                                          "Duration of one durable spool commit.",
                                          commit_seconds_bounds())),
      deliveries_total(r.counter_family(
          "spoold_deliveries_total",
          "Recipient deliveries by mailstore and outcome (delivered, deferred, failed).",
          {"mailstore", "outcome"})),
      breaker_state(r.gauge_family("spoold_breaker_state",
                                   "Circuit breaker per mailstore: 0 closed, 1 half-open, 2 open.",
                                   {"mailstore"})),
      breaker_transitions_total(r.counter_family("spoold_breaker_transitions_total",
                                                 "Circuit breaker state changes, by new state.",
                                                 {"mailstore", "to"})),
      drain_rate(r.gauge("spoold_drain_rate_messages_per_second",
                         "Messages delivered per second, recent average.")),
      drain_paused(r.gauge("spoold_drain_paused",
                           "1 while the whole drain is paused (spoolctl pause), else 0.")),
      concurrency_limit(r.gauge_family("spoold_drain_concurrency_limit",
                                       "Deliveries allowed in flight now (adaptive), by mailstore.",
                                       {"mailstore"})),
      concurrency_in_use(r.gauge_family("spoold_drain_in_flight",
                                        "Deliveries in flight now, by mailstore.", {"mailstore"})),
      fleet_fallback(r.gauge_family(
          "spoold_fleet_fallback",
          "1 while the fleet's Redis cannot be reached and a local share of the budget applies.",
          {"mailstore"})),
      fleet_fallbacks_total(r.counter_family("spoold_fleet_fallbacks_total",
                                             "Times the drain fell back to a local share.",
                                             {"mailstore"})),
      fleet_concurrency(r.gauge_family("spoold_fleet_concurrency",
                                       "Deliveries this node may have in flight under the "
                                       "fleet's budget, by mailstore.",
                                       {"mailstore"})),
      fleet_redis_requests_total(r.counter("spoold_fleet_redis_requests_total",
                                           "Requests sent to the fleet's Redis (round trips).")),
      fleet_live_nodes(r.gauge("spoold_fleet_live_nodes",
                               "Fleet nodes whose status has not expired, as last counted.")),
      dsns_held_total(r.counter("spoold_dsns_held_total",
                                "DSNs the smarthost refused for good, held for the administrator "
                                "instead of dropped.")) {}

SpooldMetrics& spoold_metrics() {
    static SpooldMetrics m(global());
    return m;
}

RateMeter::RateMeter(std::int64_t window_ms) : window_ms_(window_ms) {
    if (window_ms_ <= 0) {
        throw std::invalid_argument("rate window must be positive");
    }
}

double RateMeter::update(UnixMillis t_ms, std::uint64_t count) {
    if (!samples_.empty() && (t_ms < samples_.back().first || count < samples_.back().second)) {
        samples_.clear();
    }
    samples_.emplace_back(t_ms, count);
    // Keep one sample at or before the window's start so the rate spans the whole window.
    while (samples_.size() > 2 && samples_[1].first <= t_ms - window_ms_) {
        samples_.pop_front();
    }
    return rate();
}

double RateMeter::rate() const {
    if (samples_.size() < 2) {
        return 0;
    }
    const auto& [t0, c0] = samples_.front();
    const auto& [t1, c1] = samples_.back();
    if (t1 <= t0) {
        return 0;
    }
    constexpr double kMsPerSecond = 1000.0;
    return static_cast<double>(c1 - c0) * kMsPerSecond / static_cast<double>(t1 - t0);
}

History::History(std::size_t capacity, std::int64_t min_interval_ms)
    : capacity_(capacity), min_interval_ms_(min_interval_ms) {
    if (capacity_ == 0) {
        throw std::invalid_argument("history capacity must be positive");
    }
}

bool History::offer(HistorySample sample) {
    const std::lock_guard lock(mutex_);
    if (!samples_.empty()) {
        const std::int64_t elapsed = sample.t_ms - samples_.back().t_ms;
        // A clock stepped backwards restarts the cadence instead of silencing the ring.
        if (elapsed >= 0 && elapsed < min_interval_ms_) {
            return false;
        }
    }
    if (samples_.size() == capacity_) {
        samples_.pop_front();
    }
    samples_.push_back(std::move(sample));
    return true;
}

void History::push(HistorySample sample) {
    const std::lock_guard lock(mutex_);
    if (samples_.size() == capacity_) {
        samples_.pop_front();
    }
    samples_.push_back(std::move(sample));
}

std::vector<HistorySample> History::snapshot() const {
    const std::lock_guard lock(mutex_);
    return {samples_.begin(), samples_.end()};
}

std::size_t History::size() const {
    const std::lock_guard lock(mutex_);
    return samples_.size();
}

} // namespace spoold::metrics
