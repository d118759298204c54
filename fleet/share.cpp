#include "fleet/share.hpp"

#include <algorithm>
#include <cmath>

#include "common/log.hpp"
#include "common/metrics.hpp"

namespace spoold::fleet {
namespace {

// Burst of the fleet's token bucket, as the local one: a tenth of a second's worth.
constexpr double kBurstSeconds = 0.1;

} // namespace

std::int64_t probe_lease_ms(std::int64_t lease_ttl_ms) {
    return std::clamp<std::int64_t>(lease_ttl_ms / 4, std::min<std::int64_t>(1000, lease_ttl_ms),
                                    lease_ttl_ms);
}

StoreShare::StoreShare(std::string store, std::string node, ShareLimits limits,
                       std::chrono::milliseconds lease_ttl, const Clock& clock)
    : store_(std::move(store)), node_(std::move(node)), limits_(limits), ttl_ms_(lease_ttl.count()),
      clock_(clock), fallback_rate_(0, clock),
      fallback_gauge_(metrics::spoold_metrics().fleet_fallback.with({store_})),
      fallbacks_counter_(metrics::spoold_metrics().fleet_fallbacks_total.with({store_})),
      concurrency_gauge_(metrics::spoold_metrics().fleet_concurrency.with({store_})) {}

void StoreShare::reconfigure(ShareLimits limits) {
    limits_ = limits;
    if (mode_ == Mode::kFallback) {
        enter_fallback();
    }
    notify(poke_);
}

void StoreShare::notify(const std::function<void()>& f) const {
    if (f) {
        f();
    }
}

std::uint32_t StoreShare::burst() const {
    return static_cast<std::uint32_t>(std::max(1.0, limits_.max_rate * kBurstSeconds));
}

std::uint32_t StoreShare::fallback_concurrency() const {
    return std::max<std::uint32_t>(1, limits_.max_concurrency /
                                          std::max<std::uint32_t>(1, live_nodes_));
}

double StoreShare::fallback_rate() const {
    return limits_.max_rate / std::max<std::uint32_t>(1, live_nodes_);
}

bool StoreShare::concurrency_admits(bool urgent) const {
    if (limits_.max_concurrency == 0) {
        return true;
    }
    if (in_flight() >= total()) {
        return false;
    }
    // Urgent deliveries fill the reserve first; the rest of them take general slots.
    const std::uint32_t urgent_in_general = urgent_ > reserve_ ? urgent_ - reserve_ : 0;
    return urgent || other_ + urgent_in_general < general_;
}

bool StoreShare::rate_admits() {
    if (limits_.max_rate <= 0) {
        return true;
    }
    const UnixMillis now = clock_.now_ms();
    if (mode_ == Mode::kFallback) {
        return fallback_rate_.next_available_ms() <= now;
    }
    if (now >= tokens_expire_ms_) {
        tokens_ = 0;
    }
    return tokens_ >= 1.0;
}

bool StoreShare::admits(bool urgent) {
    const bool slots = concurrency_admits(urgent);
    const bool rate = slots && rate_admits();
    if (slots && rate) {
        return true;
    }
    const UnixMillis now = clock_.now_ms();
    const bool first = !demand(now - kDemandMemoryMs);
    last_refusal_ms_ = now;
    refused_since_sync_ = true;
    if (urgent) {
        last_urgent_refusal_ms_ = now;
    }
    if (slots && !rate) {
        last_token_refusal_ms_ = now;
        token_refused_since_sync_ = true;
    }
    if (first || sync_due()) {
        notify(poke_);
    }
    return false;
}

void StoreShare::started(bool urgent) {
    ++(urgent ? urgent_ : other_);
    if (limits_.max_rate > 0) {
        if (mode_ == Mode::kFallback) {
            (void)fallback_rate_.try_acquire();
        } else {
            tokens_ = std::max(0.0, tokens_ - 1.0);
        }
    }
}

void StoreShare::ended(bool urgent) {
    std::uint32_t& n = urgent ? urgent_ : other_;
    if (n > 0) {
        --n;
    }
    if (mode_ == Mode::kFleet && sync_due()) {
        notify(poke_);
    }
}

void StoreShare::update(std::uint32_t own_limit, bool store_down) {
    const bool went_down = store_down && !store_down_;
    own_limit_ = own_limit;
    store_down_ = store_down;
    if (went_down) {
        notify(poke_); // claim the probe, or learn who holds it
    }
}

bool StoreShare::demand(UnixMillis since_ms) const { return last_refusal_ms_ >= since_ms; }

bool StoreShare::may_probe() { return mode_ != Mode::kFleet || prober_; }

void StoreShare::probe_done(bool ok) {
    if (mode_ == Mode::kFleet && prober_) {
        probe_result_ = ok ? "up" : "down";
        notify(poke_);
    }
}

bool StoreShare::recovered_elsewhere() { return std::exchange(recovered_, false); }

drain::BudgetStatus StoreShare::status() const {
    drain::BudgetStatus s;
    s.live_nodes = live_nodes_;
    switch (mode_) {
    case Mode::kJoining:
    case Mode::kFleet:
        s.mode = drain::BudgetMode::kFleet;
        s.concurrency = limits_.max_concurrency > 0 ? total() : 0;
        s.rate = limits_.max_rate;
        s.prober = prober_;
        break;
    case Mode::kFallback:
        s.mode = drain::BudgetMode::kFallback;
        s.concurrency = limits_.max_concurrency > 0 ? fallback_concurrency() : 0;
        s.rate = fallback_rate();
        s.prober = true;
        break;
    }
    return s;
}

bool StoreShare::sync_due() const {
    if (in_sync_) {
        return false;
    }
    const UnixMillis now = clock_.now_ms();
    if (mode_ != Mode::kFleet) {
        return now >= next_attempt_ms_;
    }
    return now >= next_sync_ms();
}

UnixMillis StoreShare::next_sync_ms() const {
    if (mode_ != Mode::kFleet) {
        return next_attempt_ms_;
    }
    const UnixMillis now = clock_.now_ms();
    // Renewal: well before the lease runs out, even when nothing changes.
    UnixMillis next = last_sync_ms_ + ttl_ms_ / 3;
    if (!probe_result_.empty()) {
        return now;
    }
    const bool wanting = demand(now - kDemandMemoryMs);
    const bool short_of_slots =
        limits_.max_concurrency > 0 && wanting && own_limit_ > total() && refused_since_sync_;
    if (short_of_slots) {
        next = std::min(next, last_sync_ms_ + kStarvingSyncMs);
    }
    const bool short_of_tokens = limits_.max_rate > 0 && token_refused_since_sync_;
    if (short_of_tokens) {
        next = std::min(next, std::max(token_retry_ms_, last_sync_ms_));
    }
    // Slots held beyond what is in flight and wanted go back soon: others may be waiting.
    const std::uint32_t needed =
        wanting ? std::max(in_flight(), std::min(own_limit_, total())) : in_flight();
    if (limits_.max_concurrency > 0 && recorded_ > needed) {
        next = std::min(next, last_sync_ms_ + kGiveBackSyncMs);
    }
    if (store_down_ || prober_) {
        next = std::min(next, last_sync_ms_ + kHealthPollMs);
    }
    return next;
}

SyncRequest StoreShare::request() {
    const UnixMillis now = clock_.now_ms();
    in_sync_ = true;
    // Refusals from now on are news to the next sync; this one carries those before it.
    refused_since_sync_ = false;
    token_refused_since_sync_ = false;
    SyncRequest r;
    const bool wanting = demand(now - kDemandMemoryMs);
    r.want = wanting ? std::max(in_flight(), own_limit_) : in_flight();
    r.want_urgent =
        last_urgent_refusal_ms_ >= now - kDemandMemoryMs ? r.want : std::min(r.want, urgent_);
    if (now < grace_until_ms_) {
        // Back from the fallback share: other nodes may still run theirs, unknown to Redis.
        r.want = std::min(r.want, std::max(in_flight(), grace_cap_));
        r.want_urgent = std::min(r.want_urgent, r.want);
    }
    // Until the reply arrives the node may fill its current grant; Redis must count that.
    const std::uint32_t grant = mode_ == Mode::kFallback ? fallback_concurrency() : total();
    const std::uint32_t grant_general = mode_ == Mode::kFallback ? grant : general_;
    const std::uint32_t urgent_in_general = urgent_ > reserve_ ? urgent_ - reserve_ : 0;
    r.used = std::max(in_flight(), grant);
    r.used_general = std::max(other_ + urgent_in_general, grant_general);
    pending_used_ = r.used;
    if (limits_.max_rate > 0 && wanting && last_token_refusal_ms_ >= now - kDemandMemoryMs) {
        // As many tokens as deliveries could start now, up to this node's part of a burst.
        const std::uint32_t slots =
            limits_.max_concurrency > 0 ? std::min(own_limit_, total()) : own_limit_;
        const std::uint32_t room = slots > in_flight() ? slots - in_flight() : 1;
        const std::uint32_t share =
            std::max<std::uint32_t>(1, burst() / std::max<std::uint32_t>(1, live_nodes_));
        r.tokens = std::min(room, share);
        r.min_tokens = std::max<std::uint32_t>(1, r.tokens / 2);
    }
    r.probing = store_down_;
    r.probe_result = probe_result_;
    publishing_ = !probe_result_.empty();
    probe_result_.clear();
    return r;
}

void StoreShare::on_reply(const SyncReply& reply) {
    const UnixMillis now = clock_.now_ms();
    in_sync_ = false;
    last_sync_ms_ = now;
    if (mode_ == Mode::kFallback) {
        log::info("event=fleet_rejoined mailstore={} after_ms={} live_nodes={}", log::quote(store_),
                  now - fallback_since_ms_, reply.live_nodes);
        fallback_gauge_.set(0);
        grace_until_ms_ = now + ttl_ms_;
        // By the live nodes counted before the outage: a Redis that restarted empty counts
        // only those that have rejoined, while the others still run their fallback shares.
        grace_cap_ = fallback_concurrency();
    }
    mode_ = Mode::kFleet;
    live_nodes_ = std::max<std::uint32_t>(1, reply.live_nodes);
    const std::uint32_t before = total();
    general_ = reply.general;
    reserve_ = reply.reserve;
    if (now < grace_until_ms_) {
        const std::uint32_t cap = std::max(in_flight(), grace_cap_);
        general_ = std::min(general_, cap);
        reserve_ = std::min(reserve_, cap - general_);
    }
    recorded_ = std::max(pending_used_, total());
    concurrency_gauge_.set(total());
    if (reply.tokens > 0) {
        tokens_ = (now < tokens_expire_ms_ ? tokens_ : 0) + reply.tokens;
        tokens_expire_ms_ = now + kTokenLifetimeMs;
    }
    token_retry_ms_ = reply.retry_ms > 0 ? now + reply.retry_ms : now;
    prober_ = !reply.prober.empty() && reply.prober == node_;
    if (!epoch_known_ || publishing_) {
        epoch_known_ = true;
        seen_epoch_ = reply.epoch;
    } else if (reply.epoch > seen_epoch_) {
        seen_epoch_ = reply.epoch;
        recovered_ = reply.state == "up";
    }
    publishing_ = false;
    if (total() > before || reply.tokens > 0 || recovered_) {
        notify(wake_);
    }
}

void StoreShare::on_failure(const std::string& why) {
    const UnixMillis now = clock_.now_ms();
    in_sync_ = false;
    next_attempt_ms_ = now + kRetryMs;
    if (mode_ == Mode::kFallback) {
        return;
    }
    if (!probe_result_.empty() || publishing_) {
        probe_result_.clear(); // alone now: every node probes for itself
        publishing_ = false;
    }
    fallback_since_ms_ = now;
    mode_ = Mode::kFallback;
    enter_fallback();
    fallback_gauge_.set(1);
    fallbacks_counter_.inc();
    log::warn("event=fleet_fallback mailstore={} concurrency={} rate={:.1f} live_nodes={} error={}",
              log::quote(store_), limits_.max_concurrency > 0 ? fallback_concurrency() : 0,
              fallback_rate(), live_nodes_, log::quote(why));
    notify(wake_);
}

void StoreShare::enter_fallback() {
    fallback_rate_.set_rate(fallback_rate() > 0 ? fallback_rate() : 0);
    general_ = fallback_concurrency();
    reserve_ = 0;
    prober_ = false;
    tokens_ = 0;
    concurrency_gauge_.set(limits_.max_concurrency > 0 ? fallback_concurrency() : 0);
}

void StoreShare::set_live_nodes(std::uint32_t n) {
    live_nodes_ = std::max<std::uint32_t>(1, n);
    if (mode_ == Mode::kFallback) {
        enter_fallback();
    }
}

} // namespace spoold::fleet
