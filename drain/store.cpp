#include "drain/store.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>

#include "common/log.hpp"

namespace spoold::drain {

BreakerOptions breaker_options(const policy::Config& config) {
    BreakerOptions o;
    o.failures = config.drain.breaker_failures;
    o.min_backoff = config.drain.breaker_min_backoff;
    o.max_backoff = config.drain.breaker_max_backoff;
    return o;
}

PacingOptions pacing_options(const policy::Config& config) {
    return PacingOptions{config.drain.initial_concurrency, config.drain.max_concurrency};
}

Store::Store(std::unique_ptr<Mailstore> mailstore, const policy::Config& config, const Clock& clock)
    : mailstore_(std::move(mailstore)),
      breaker_(mailstore_->name(), breaker_options(config), clock),
      pacing_(pacing_options(config), clock), rate_(config.drain.max_rate, clock), clock_(clock),
      urgent_(config.class_id(config.fleet.urgent_class)) {}

void Store::reconfigure(const policy::Config& config) {
    breaker_.reconfigure(breaker_options(config));
    pacing_.reconfigure(pacing_options(config));
    rate_.set_rate(config.drain.max_rate);
    urgent_ = config.class_id(config.fleet.urgent_class);
}

void Store::set_budget(Budget& budget) { budget_ = &budget; }

bool Store::admits(spool::ClassId klass) { return budget_->admits(urgent(klass)); }

void Store::tick() {
    budget_->update(allowed(), breaker_.state() == BreakerState::kOpen);
    if (breaker_.state() == BreakerState::kOpen && !probing_ && budget_->recovered_elsewhere()) {
        log::info("event=probe mailstore={} ok=true by=fleet", log::quote(name()));
        breaker_.on_probe_result(true);
    }
}

std::uint32_t Store::allowed() const {
    if (paused_) {
        return 0;
    }
    return std::min(pacing_.limit(), breaker_.concurrency_cap());
}

bool Store::has_room() const {
    return in_flight_ < allowed() && rate_.next_available_ms() <= clock_.now_ms();
}

void Store::take_slot(spool::ClassId klass) {
    ++in_flight_;
    (void)rate_.try_acquire();
    budget_->started(urgent(klass));
}

void Store::release_slot(spool::ClassId klass) {
    if (in_flight_ > 0) {
        --in_flight_;
        budget_->ended(urgent(klass));
    }
}

boost::asio::cancellation_slot Store::start_probe() {
    breaker_.on_probe_started();
    probing_ = true;
    probe_cancel_ = std::make_unique<boost::asio::cancellation_signal>();
    return probe_cancel_->slot();
}

void Store::end_probe(const boost::asio::any_io_executor& executor) {
    probing_ = false;
    boost::asio::post(executor, [sig = std::move(probe_cancel_)] {});
}

void Store::cancel_probe() {
    if (probe_cancel_) {
        probe_cancel_->emit(boost::asio::cancellation_type::terminal);
    }
}

MailstoreStatus Store::status() const {
    MailstoreStatus m;
    m.name = name();
    m.breaker = breaker_.state();
    m.next_probe_ms = breaker_.state() == BreakerState::kOpen ? breaker_.next_probe_ms() : 0;
    m.concurrency_limit = allowed();
    m.in_flight = in_flight_;
    m.best_latency_ms = pacing_.best_latency_ms();
    m.paused = paused_;
    m.budget = budget_->status();
    return m;
}

} // namespace spoold::drain
