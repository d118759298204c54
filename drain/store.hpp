// One mailstore as the drain drives it: its connector behind a breaker, pacing, a rate limit
// and the budget it shares with other nodes; in-flight count, pause flag, running probe. It
// answers "is there room now"; it picks, routes and counts no mail.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.hpp"
#include "drain/breaker.hpp"
#include "drain/budget.hpp"
#include "drain/mailstore.hpp"
#include "drain/pacing.hpp"
#include "drain/status.hpp"
#include "policy/config.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

BreakerOptions breaker_options(const policy::Config& config);
PacingOptions pacing_options(const policy::Config& config);

class Store {
public:
    Store(std::unique_ptr<Mailstore> mailstore, const policy::Config& config, const Clock& clock);

    Mailstore& mailstore() { return *mailstore_; }
    const std::string& name() const { return mailstore_->name(); }
    Breaker& breaker() { return breaker_; }
    const Breaker& breaker() const { return breaker_; }
    ConcurrencyLimit& pacing() { return pacing_; }

    // SIGHUP: new breaker, pacing and rate settings.
    void reconfigure(const policy::Config& config);
    // Deliveries the breaker and pacing allow in flight now; 0 while paused.
    std::uint32_t allowed() const;
    // A delivery may start now as far as this node's own limits go: a slot is free and the
    // rate limit has a token. The clock is read here, not once per pump: it moves while a
    // pump runs, and a stale time would make the token bucket look empty to a later check
    // (dropping picks). The shared budget is asked by admits(), once the class is known.
    bool has_room() const;
    // The shared budget lets a delivery of class `klass` start now (a refusal is demand).
    bool admits(spool::ClassId klass);
    std::uint32_t in_flight() const { return in_flight_; }
    // A delivery of class `klass` starts (a slot, a token, its share of the budget) or ends.
    void take_slot(spool::ClassId klass);
    void release_slot(spool::ClassId klass);

    // The budget shared with other nodes; by default an UnlimitedBudget. Not owned: it
    // must outlive the store.
    void set_budget(Budget& budget);
    Budget& budget() { return *budget_; }
    // Each drain tick: tells the budget the node's own limits, and takes a recovery another
    // node's probe saw (an open breaker goes half-open as if this node had probed).
    void tick();

    bool paused() const { return paused_; }
    void set_paused(bool paused) { paused_ = paused; }

    bool probing() const { return probing_; }
    // Marks a probe as running and returns the slot its cancellation is bound to.
    boost::asio::cancellation_slot start_probe();
    // The probe ended. Its signal is destroyed later, on `executor`: the caller may be the
    // handler bound to the signal's slot.
    void end_probe(const boost::asio::any_io_executor& executor);
    void cancel_probe();

    // Status without the outcome counts (DrainStats has those).
    MailstoreStatus status() const;

private:
    bool urgent(spool::ClassId klass) const { return urgent_ && *urgent_ == klass; }

    std::unique_ptr<Mailstore> mailstore_;
    Breaker breaker_;
    ConcurrencyLimit pacing_;
    RateLimiter rate_;
    const Clock& clock_;
    std::unique_ptr<UnlimitedBudget> unlimited_ = std::make_unique<UnlimitedBudget>();
    Budget* budget_ = unlimited_.get();
    std::optional<spool::ClassId> urgent_; // fleet.urgent_class
    std::uint32_t in_flight_ = 0;
    bool paused_ = false; // spool meta "paused.<name>"
    bool probing_ = false;
    std::unique_ptr<boost::asio::cancellation_signal> probe_cancel_;
};

} // namespace spoold::drain
