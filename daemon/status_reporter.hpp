// Samples the running daemon once per tick into the metrics registry (spool gauges,
// drain and breaker state, rates), the status page's history, and the /status JSON.
// It decides nothing: it only turns the components' snapshots into numbers.
#pragma once

#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "common/metrics.hpp"
#include "daemon/http/status.hpp"
#include "drain/drain.hpp"
#include "policy/config.hpp"
#include "spool/spool.hpp"

namespace spoold::daemon {

struct StatusInputs {
    UnixMillis now_ms = 0;
    const policy::Config* config = nullptr;
    const spool::Counters* counters = nullptr;
    std::optional<QueueId> oldest;
    std::optional<spool::SpaceInfo> space; // unset when the spool could not say
    const drain::DrainSnapshot* drain = nullptr;
    std::size_t smtp_sessions = 0;
    std::uint64_t accepted_total = 0; // messages committed since start
    std::string fleet_json;           // the fleet view as JSON; empty without a fleet
};

class StatusReporter {
public:
    explicit StatusReporter(UnixMillis started_ms);
    // Called on the daemon's tick (one thread).
    void sample(const StatusInputs& in);
    // The last sample as /status JSON; safe from any thread.
    std::string json() const;
    // Messages per second delivered into mailstore `name` at the last sample.
    double mailstore_rate(std::string_view name) const;

private:
    UnixMillis started_ms_;
    metrics::SpooldMetrics& m_;
    metrics::RateMeter ingest_;
    metrics::RateMeter drain_;
    metrics::History history_;
    // Per mailstore: the drain's counters as last seen, and its delivery rate.
    struct StoreSeen {
        std::uint64_t delivered = 0;
        std::uint64_t deferred = 0;
        std::uint64_t failed = 0;
        metrics::RateMeter rate;
    };
    std::map<std::string, StoreSeen, std::less<>> stores_;
    mutable std::mutex mutex_;
    http::StatusSnapshot last_;
};

metrics::BreakerLevel breaker_level(drain::BreakerState s);

// spool.max_size x spool.high_watermark: with more in use, admission refuses new mail.
std::uint64_t accept_limit_bytes(const spool::SpaceInfo& space, const policy::SpoolConfig& config);

} // namespace spoold::daemon
