// The /status document: plain structs the daemon fills and status_json() that writes them
// as JSON (hand-written, escaping included). It reads nothing itself: no spool, no drain.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.hpp"

namespace spoold::http {

// The JSON written by status_json(), every key always present:
// {
//   "version": "0.1.0",
//   "now_ms": 1700000000000,            // Unix ms when the snapshot was taken
//   "uptime_s": 12.5,
//   "paused": false,                     // drain paused by the administrator
//   "classes": [{"name": "urgent", "ready": 1, "deferred": 2, "held": 0, "bytes": 4096}],
//   "total_messages": 3,                 // ready + deferred + held over all classes
//   "backlog": 3,                        // ready + deferred: what is waiting to drain
//   "total_bytes": 4096,
//   "oldest_age_s": 60,
//   "mailstores": [{"name": "dovecot", "breaker": "open", "breaker_level": 2,
//                   "concurrency_limit": 4, "in_flight": 0, "rate": 0}],
//   "ingest_rate": 1.5,                  // messages accepted per second
//   "drain_rate": 0,                     // messages delivered per second
//   "drain_eta_s": null,                 // backlog / drain_rate; null when drain_rate <= 0
//   "history": [{"t": 1700000000000, "backlog": {"urgent": 3}, "ingest": 1.5,
//                "drain": 0, "breaker": 2}],  // oldest first, one per ~5 s, last hour
//   "fleet": null                        // with fleet.redis: the fleet as this node last
//                                        // read it, as `spoolctl fleet status --json`
// }
// Numbers that are not finite are written as null.

struct ClassStatus {
    std::string name;
    std::uint64_t ready = 0;
    std::uint64_t deferred = 0;
    std::uint64_t held = 0;
    std::uint64_t bytes = 0;
};

struct MailstoreStatus {
    std::string name;
    metrics::BreakerLevel breaker = metrics::BreakerLevel::kClosed;
    std::uint32_t concurrency_limit = 0;
    std::uint32_t in_flight = 0;
    double rate = 0; // messages delivered per second into this mailstore
};

struct StatusSnapshot {
    std::string version;
    UnixMillis now_ms = 0;
    double uptime_s = 0;
    bool paused = false;
    std::vector<ClassStatus> classes; // in config order
    double oldest_age_s = 0;
    std::vector<MailstoreStatus> mailstores;
    double ingest_rate = 0;
    double drain_rate = 0;
    std::vector<metrics::HistorySample> history; // metrics::History::snapshot()
    // A JSON object written as it is (fleet::view_json: names in it are config-validated,
    // so nothing needs escaping for the page); empty: null.
    std::string fleet_json;
};

// Strings are written script-safe ('<' escaped too, common/json.hpp): the page may inline
// the document in a <script> block.
std::string status_json(const StatusSnapshot& status);

} // namespace spoold::http
