// One node's share of one mailstore's fleet budget (a drain::Budget): slots and rate tokens
// the sync script granted, or a fallback share while Redis cannot be reached. Pure state on
// a Clock: the Coordinator carries its requests to Redis; nothing here does I/O or waits.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "common/clock.hpp"
#include "common/metrics.hpp"
#include "drain/budget.hpp"
#include "drain/pacing.hpp"

namespace spoold::fleet {

struct ShareLimits {
    std::uint32_t max_concurrency = 0; // fleet-wide; 0 = none
    double max_rate = 0;               // fleet-wide, per second; 0 = none
    std::uint32_t urgent_reserve = 0;
};

// A refusal keeps counting as demand this long.
inline constexpr std::int64_t kDemandMemoryMs = 500;
// While the node wants more than it holds, it asks again this often.
inline constexpr std::int64_t kStarvingSyncMs = 100;
// Slots it no longer needs go back this soon.
inline constexpr std::int64_t kGiveBackSyncMs = 50;
// While the store is down, the fleet's probe result is read this often (a recovery is
// seen by every node well within a second).
inline constexpr std::int64_t kHealthPollMs = 250;
// After a failed sync, Redis is tried again this often.
inline constexpr std::int64_t kRetryMs = 250;
// Rate tokens not used within this long are dropped: a stash spent late would burst.
inline constexpr std::int64_t kTokenLifetimeMs = 500;

// The probe lease: held while the prober's breaker is open and renewed every
// kHealthPollMs; a prober that dies hands the probe over after this (lease_ttl / 4,
// between 1 s and lease_ttl).
std::int64_t probe_lease_ms(std::int64_t lease_ttl_ms);

// What one sync asks (the sync script's ARGV, scripts.cpp).
struct SyncRequest {
    std::uint32_t used = 0;
    std::uint32_t used_general = 0;
    std::uint32_t want = 0;
    std::uint32_t want_urgent = 0;
    std::uint32_t tokens = 0;
    std::uint32_t min_tokens = 0;
    bool probing = false;
    std::string probe_result; // "", "up" or "down"
};

// What it got back.
struct SyncReply {
    std::uint32_t general = 0;
    std::uint32_t reserve = 0;
    std::uint32_t tokens = 0;
    std::int64_t retry_ms = 0;
    std::string prober;
    std::int64_t epoch = 0;
    std::string state;
    std::uint32_t live_nodes = 1;
};

class StoreShare final : public drain::Budget {
public:
    StoreShare(std::string store, std::string node, ShareLimits limits,
               std::chrono::milliseconds lease_ttl, const Clock& clock);

    const std::string& store() const { return store_; }
    const ShareLimits& limits() const { return limits_; }
    // Most tokens the fleet's bucket holds: a tenth of a second's worth, at least one.
    std::uint32_t burst() const;
    void reconfigure(ShareLimits limits);

    // drain::Budget
    bool admits(bool urgent) override;
    void started(bool urgent) override;
    void ended(bool urgent) override;
    void update(std::uint32_t own_limit, bool store_down) override;
    bool may_probe() override;
    void probe_done(bool ok) override;
    bool recovered_elsewhere() override;
    void set_wake(std::function<void()> wake) override { wake_ = std::move(wake); }
    drain::BudgetStatus status() const override;

    // The Coordinator's side. `poke` is called when a sync should not wait for its time.
    void set_poke(std::function<void()> poke) { poke_ = std::move(poke); }
    bool sync_due() const;
    // When sync_due() may next turn true by itself (the Coordinator's timer).
    UnixMillis next_sync_ms() const;
    // Starts a sync: what to send. Exactly one on_reply() or on_failure() follows.
    SyncRequest request();
    void on_reply(const SyncReply& reply);
    // Redis could not be asked: from now on the fallback share, until a reply comes.
    void on_failure(const std::string& why);
    // The live nodes the last heartbeat counted (the fallback share's divisor).
    void set_live_nodes(std::uint32_t n);

private:
    enum class Mode { kJoining, kFleet, kFallback };

    std::uint32_t in_flight() const { return urgent_ + other_; }
    std::uint32_t total() const { return general_ + reserve_; }
    // The fallback share of the concurrency limit: limit / live nodes, at least 1.
    std::uint32_t fallback_concurrency() const;
    double fallback_rate() const;
    bool concurrency_admits(bool urgent) const;
    bool rate_admits();
    bool demand(UnixMillis since_ms) const;
    void enter_fallback();
    void notify(const std::function<void()>& f) const;

    std::string store_;
    std::string node_;
    ShareLimits limits_;
    std::int64_t ttl_ms_;
    const Clock& clock_;
    std::function<void()> wake_;
    std::function<void()> poke_;

    Mode mode_ = Mode::kJoining;
    std::uint32_t urgent_ = 0; // in flight, urgent class
    std::uint32_t other_ = 0;  // in flight, every other class
    std::uint32_t general_ = 0;
    std::uint32_t reserve_ = 0;
    std::uint32_t recorded_ = 0;     // what Redis holds for us (at least the targets)
    std::uint32_t pending_used_ = 0; // `used` of the sync in flight
    std::uint32_t own_limit_ = 0;
    bool store_down_ = false;
    std::uint32_t live_nodes_ = 1;
    UnixMillis last_refusal_ms_ = -1'000'000;
    UnixMillis last_urgent_refusal_ms_ = -1'000'000;
    UnixMillis last_token_refusal_ms_ = -1'000'000;
    // Refused since the last sync began (the clock may not have moved since its reply).
    bool refused_since_sync_ = false;
    bool token_refused_since_sync_ = false;
    double tokens_ = 0;
    UnixMillis tokens_expire_ms_ = 0;
    UnixMillis token_retry_ms_ = 0;
    drain::RateLimiter fallback_rate_;
    bool in_sync_ = false;
    UnixMillis last_sync_ms_ = 0;
    UnixMillis next_attempt_ms_ = 0;
    UnixMillis grace_until_ms_ = 0;
    std::uint32_t grace_cap_ = 0; // the fallback share when it rejoined
    UnixMillis fallback_since_ms_ = 0;
    bool prober_ = false;
    std::string probe_result_; // to publish with the next sync
    bool publishing_ = false;  // the sync in flight carries our probe result
    bool epoch_known_ = false;
    std::int64_t seen_epoch_ = 0;
    bool recovered_ = false;
    metrics::Gauge& fallback_gauge_;
    metrics::Counter& fallbacks_counter_;
    metrics::Gauge& concurrency_gauge_;
};

} // namespace spoold::fleet
