#include "daemon/status_reporter.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include "common/version.hpp"

namespace spoold::daemon {
namespace {

// The spool's states as the metrics label them.
constexpr std::array<std::pair<spool::MsgState, std::string_view>, spool::kNumMsgStates>
    kStateLabels{{{spool::MsgState::kReady, metrics::kStateReady},
                  {spool::MsgState::kDeferred, metrics::kStateDeferred},
                  {spool::MsgState::kHeld, metrics::kStateHeld}}};

} // namespace

metrics::BreakerLevel breaker_level(drain::BreakerState s) {
    switch (s) {
    case drain::BreakerState::kClosed: return metrics::BreakerLevel::kClosed;
    case drain::BreakerState::kHalfOpen: return metrics::BreakerLevel::kHalfOpen;
    case drain::BreakerState::kOpen: return metrics::BreakerLevel::kOpen;
    }
    return metrics::BreakerLevel::kOpen;
}

std::uint64_t accept_limit_bytes(const spool::SpaceInfo& space, const policy::SpoolConfig& config) {
    return static_cast<std::uint64_t>(static_cast<double>(space.map_size) * config.high_watermark);
}

StatusReporter::StatusReporter(UnixMillis started_ms)
    : started_ms_(started_ms), m_(metrics::spoold_metrics()) {}

void StatusReporter::sample(const StatusInputs& in) {
    const policy::Config& cfg = *in.config;
    const spool::Counters& c = *in.counters;
    const drain::DrainSnapshot& d = *in.drain;

    http::StatusSnapshot snap;
    snap.version = kVersion;
    snap.now_ms = in.now_ms;
    snap.uptime_s = static_cast<double>(in.now_ms - started_ms_) / 1000.0;
    snap.paused = d.paused;

    metrics::HistorySample h;
    h.t_ms = in.now_ms;
    for (std::size_t k = 0; k < cfg.classes.size() && k < spool::kMaxClasses; ++k) {
        http::ClassStatus cs;
        cs.name = cfg.classes[k].name;
        cs.ready = c.messages[k][static_cast<std::size_t>(spool::MsgState::kReady)];
        cs.deferred = c.messages[k][static_cast<std::size_t>(spool::MsgState::kDeferred)];
        cs.held = c.messages[k][static_cast<std::size_t>(spool::MsgState::kHeld)];
        cs.bytes = 0;
        for (const auto& [state, label] : kStateLabels) {
            const auto s = static_cast<std::size_t>(state);
            const std::vector<std::string> labels{cs.name, std::string(label)};
            m_.spool_messages.with(labels).set(static_cast<double>(c.messages[k][s]));
            m_.spool_bytes.with(labels).set(static_cast<double>(c.bytes[k][s]));
            cs.bytes += c.bytes[k][s];
        }
        h.backlog.emplace_back(cs.name, cs.ready + cs.deferred);
        snap.classes.push_back(std::move(cs));
    }
    const double oldest_age =
        in.oldest ? std::max(0.0, static_cast<double>(in.now_ms - in.oldest->millis()) / 1000.0)
                  : 0.0;
    snap.oldest_age_s = oldest_age;
    m_.spool_oldest_message_age_seconds.set(oldest_age);
    m_.smtp_connections.set(static_cast<double>(in.smtp_sessions));
    if (in.space) {
        m_.spool_used_bytes.set(static_cast<double>(in.space->used_bytes));
        m_.spool_accept_limit_bytes.set(
            static_cast<double>(accept_limit_bytes(*in.space, cfg.spool)));
        m_.spool_disk_free_bytes.set(static_cast<double>(in.space->fs_free_bytes));
    }
    m_.spool_min_free_disk_bytes.set(static_cast<double>(cfg.spool.min_free_disk));
    m_.drain_paused.set(d.paused ? 1.0 : 0.0);

    metrics::BreakerLevel worst = metrics::BreakerLevel::kClosed;
    for (const auto& ms : d.mailstores) {
        const metrics::BreakerLevel level = breaker_level(ms.breaker);
        worst = std::max(worst, level);
        m_.breaker_state.with({ms.name}).set(static_cast<double>(level));
        m_.concurrency_limit.with({ms.name}).set(static_cast<double>(ms.concurrency_limit));
        m_.concurrency_in_use.with({ms.name}).set(static_cast<double>(ms.in_flight));
        // Deliveries are counted per recipient by the drain; the counters only move forward.
        StoreSeen& seen = stores_[ms.name];
        auto bump = [&](std::uint64_t now_value, std::uint64_t& last, std::string_view outcome) {
            if (now_value > last) {
                m_.deliveries_total.with({ms.name, std::string(outcome)}).inc(now_value - last);
            }
            last = now_value;
        };
        bump(ms.delivered, seen.delivered, metrics::kOutcomeDelivered);
        bump(ms.deferred, seen.deferred, metrics::kOutcomeDeferred);
        bump(ms.failed, seen.failed, metrics::kOutcomeFailed);
        snap.mailstores.push_back(
            http::MailstoreStatus{ms.name, level, ms.concurrency_limit, ms.in_flight,
                                  seen.rate.update(in.now_ms, ms.messages_delivered)});
    }

    snap.ingest_rate = ingest_.update(in.now_ms, in.accepted_total);
    snap.drain_rate = drain_.update(in.now_ms, d.messages_delivered);
    m_.drain_rate.set(snap.drain_rate);
    h.ingest_rate = snap.ingest_rate;
    h.drain_rate = snap.drain_rate;
    h.breaker = worst;
    history_.offer(std::move(h));
    snap.history = history_.snapshot();
    snap.fleet_json = in.fleet_json;

    const std::lock_guard lock(mutex_);
    last_ = std::move(snap);
}

double StatusReporter::mailstore_rate(std::string_view name) const {
    const std::lock_guard lock(mutex_);
    for (const auto& m : last_.mailstores) {
        if (m.name == name) {
            return m.rate;
        }
    }
    return 0;
}

std::string StatusReporter::json() const {
    const std::lock_guard lock(mutex_);
    return http::status_json(last_);
}

} // namespace spoold::daemon
