#include "drain/drain.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>

#include "common/log.hpp"

namespace spoold::drain {
namespace {

namespace asio = boost::asio;

constexpr std::int64_t kLocalErrorBackoffMs = 1000; // after a failed spool read or write
constexpr std::string_view kExpiredResponse = "expired: retention period of its class ran out";

bool final_state(spool::RcptState s) {
    return s == spool::RcptState::kDelivered || s == spool::RcptState::kFailed ||
           s == spool::RcptState::kExpired;
}

std::string describe(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        return ex.what();
    } catch (...) {
        return "unknown exception";
    }
}

// Runs `submit` with a spool::Done that resumes the caller on `ex` (the spool calls Done
// on its writer thread). The executor is tracked until then so the io_context does not
// run out of work while a commit is pending.
template <typename CompletionToken>
auto async_spool_write(asio::any_io_executor ex, std::function<void(spool::Done)> submit,
                       CompletionToken&& token) {
    return asio::async_initiate<CompletionToken, void(Status)>(
        [](auto handler, asio::any_io_executor exec, std::function<void(spool::Done)> fn) {
            auto shared = std::make_shared<decltype(handler)>(std::move(handler));
            const asio::any_io_executor tracked =
                asio::prefer(exec, asio::execution::outstanding_work.tracked);
            fn([shared, tracked](Status status) {
                asio::post(tracked, [shared, status]() mutable { std::move (*shared)(status); });
            });
        },
        token, std::move(ex), std::move(submit));
}

BreakerOptions breaker_options(const policy::Config& c) {
    BreakerOptions o;
    o.failures = c.drain.breaker_failures;
    o.min_backoff = c.drain.breaker_min_backoff;
    o.max_backoff = c.drain.breaker_max_backoff;
    return o;
}

PacingOptions pacing_options(const policy::Config& c) {
    return PacingOptions{c.drain.initial_concurrency, c.drain.max_concurrency};
}

SchedulerOptions scheduler_options(const policy::Config& c) {
    SchedulerOptions o;
    o.weights.clear();
    for (const auto& k : c.classes) {
        o.weights.push_back(k.weight);
    }
    for (std::size_t i = 0; i < c.classes.size(); ++i) {
        if (!c.drain.strict_class.empty() && c.classes[i].name == c.drain.strict_class) {
            o.strict_class = static_cast<spool::ClassId>(i);
        }
    }
    o.max_per_recipient = c.drain.max_per_recipient;
    return o;
}

policy::ExpiryAction expiry_action(const policy::Config& c, spool::ClassId klass) {
    // A class removed from the configuration keeps the safest action: tell the sender.
    return klass < c.classes.size() ? c.classes[klass].on_expiry : policy::ExpiryAction::kBounce;
}

std::string_view to_string(policy::ExpiryAction a) {
    switch (a) {
    case policy::ExpiryAction::kBounce: return "bounce";
    case policy::ExpiryAction::kHold: return "hold";
    case policy::ExpiryAction::kDiscard: return "discard";
    }
    return "unknown";
}

} // namespace

std::chrono::milliseconds retry_delay(const policy::DrainConfig& config, std::uint32_t attempts) {
    const std::int64_t lo = std::max<std::int64_t>(1, config.retry_min.count());
    const std::int64_t hi = std::max<std::int64_t>(lo, config.retry_max.count());
    std::int64_t d = lo;
    for (std::uint32_t i = 0; i < attempts && d < hi; ++i) {
        d *= 2;
    }
    return std::chrono::milliseconds(std::min(d, hi));
}

// | reply                                   | recipient becomes          | attempt counted |
// | 2xx                                     | delivered                  | yes             |
// | mailstore trouble, session reply        | stays queued               | no              |
// | mailstore trouble, per-recipient 4xx    | stays queued               | no              |
// | 4xx (or no usable reply)                | deferred, backoff by tries | yes             |
// | 5xx                                     | failed (DSN)               | yes             |
// Trouble never fails a recipient: while the store is sick its answers are not verdicts.
std::vector<spool::RecipientUpdate> map_result(const spool::Envelope& env,
                                               const std::vector<std::uint32_t>& indexes,
                                               const DeliveryResult& result,
                                               const policy::DrainConfig& config, UnixMillis now) {
    std::vector<spool::RecipientUpdate> updates;
    updates.reserve(indexes.size());
    for (std::size_t k = 0; k < indexes.size(); ++k) {
        const std::uint32_t index = indexes[k];
        spool::RecipientUpdate u;
        u.index = index;
        const Reply* reply = nullptr;
        if (result.session_reply) {
            reply = &*result.session_reply;
        } else if (k < result.per_recipient.size()) {
            reply = &result.per_recipient[k];
        }
        if (reply == nullptr) {
            // The connector gave fewer replies than recipients: retry later, but count it
            // so a connector bug cannot loop forever without backoff.
            u.state = spool::RcptState::kDeferred;
            u.response = "451 4.3.0 no reply for this recipient";
        } else if (reply->positive()) {
            u.state = spool::RcptState::kDelivered;
            u.response = reply->summary();
        } else if (result.mailstore_trouble && (result.session_reply || !reply->permanent())) {
            u.state = spool::RcptState::kQueued;
            u.count_attempt = false;
            u.response = reply->summary();
        } else if (reply->permanent()) {
            u.state = spool::RcptState::kFailed;
            u.response = reply->summary();
        } else {
            u.state = spool::RcptState::kDeferred;
            u.response = reply->summary();
        }
        if (u.state == spool::RcptState::kDeferred) {
            const std::uint32_t attempts =
                index < env.recipients.size() ? env.recipients[index].attempts : 0;
            u.next_attempt_ms = now + retry_delay(config, attempts).count();
        }
        updates.push_back(std::move(u));
    }
    return updates;
}

Drain::Drain(asio::any_io_executor executor, spool::Spool& spool, const policy::Config& config,
             std::vector<std::unique_ptr<Mailstore>> mailstores, const Clock& clock,
             DsnBuilder make_dsn)
    : executor_(std::move(executor)), spool_(spool),
      config_(std::make_shared<const policy::Config>(config)), clock_(clock),
      make_dsn_(std::move(make_dsn)), scheduler_(spool, scheduler_options(config), clock),
      wake_(executor_) {
    stores_.reserve(mailstores.size());
    for (auto& m : mailstores) {
        std::string name = m->name();
        stores_.push_back(Store{std::move(m),
                                Breaker(std::move(name), breaker_options(config), clock),
                                ConcurrencyLimit(pacing_options(config), clock),
                                RateLimiter(config.drain.max_rate, clock)});
    }
    mailstore_count_ = stores_.size();
    build_routes(config);
    admit_ = [this](QueueId id, const std::vector<std::string>& recipients, std::uint32_t flags) {
        if (mailstore_count_ == 1 && (flags & spool::kFlagDsn) == 0) {
            // pump() asks only while the one mailstore has room.
            return !kept_from_trial(id, 0);
        }
        return std::any_of(recipients.begin(), recipients.end(),
                           [&](const std::string& r) { return can_take(route(r, flags), id); });
    };
}

void Drain::build_routes(const policy::Config& config) {
    routes_.clear();
    default_store_ = 0;
    bool have_default = false;
    for (const auto& mc : config.mailstores) {
        // By name: the connectors are built once, a reload may only move domains.
        const auto it = std::find_if(
            stores_.begin(), stores_.begin() + static_cast<std::ptrdiff_t>(mailstore_count_),
            [&](const Store& st) { return st.mailstore->name() == mc.name; });
        if (it == stores_.begin() + static_cast<std::ptrdiff_t>(mailstore_count_)) {
            log::warn("event=drain_route_skipped mailstore={} note=\"not running; a new mailstore "
                      "needs a "
                      "restart\"",
                      log::quote(mc.name));
            continue;
        }
        const auto index = static_cast<std::size_t>(it - stores_.begin());
        if (mc.domains.empty() && !have_default) {
            default_store_ = index;
            have_default = true;
        }
        for (const auto& d : mc.domains) {
            routes_.emplace(d, index);
        }
    }
}

Drain::~Drain() {
    if (running_) {
        log::error("event=drain_destroyed_running note=\"stop() did not complete first\"");
    }
}

void Drain::start() {
    asio::post(executor_, [this] {
        if (started_) {
            return;
        }
        started_ = true;
        running_ = true;
        asio::co_spawn(executor_, run(), [this](std::exception_ptr e) {
            if (e) {
                log::error("event=drain_loop_failed error={}", log::quote(describe(e)));
                running_ = false;
            }
        });
    });
}

void Drain::stop(std::function<void()> on_stopped, std::chrono::milliseconds grace) {
    asio::post(executor_, [this, cb = std::move(on_stopped), grace]() mutable {
        if (cb) {
            on_stopped_.push_back(std::move(cb));
        }
        if (!stopping_) {
            stopping_ = true;
            stop_grace_ = grace;
            log::info("event=drain_stopping in_flight={}", in_flight_.size());
        }
        if (!running_) {
            auto callbacks = std::move(on_stopped_);
            on_stopped_.clear();
            for (auto& c : callbacks) {
                c();
            }
            return;
        }
        wake();
    });
}

void Drain::reconfigure(std::shared_ptr<const policy::Config> config) {
    asio::post(executor_,
               [this, cfg = std::move(config)]() mutable { apply_config(std::move(cfg)); });
}

void Drain::apply_config(std::shared_ptr<const policy::Config> config) {
    if (!config) {
        return;
    }
    config_ = std::move(config);
    for (auto& s : stores_) {
        s.breaker.reconfigure(breaker_options(*config_));
        s.pacing.reconfigure(pacing_options(*config_));
        s.rate.set_rate(config_->drain.max_rate);
    }
    build_routes(*config_);
    scheduler_.reconfigure(scheduler_options(*config_));
    log::info("event=drain_reconfigured max_concurrency={} max_rate={} classes={}",
              config_->drain.max_concurrency, config_->drain.max_rate, config_->classes.size());
    pump();
}

void Drain::pause(bool paused) {
    asio::post(executor_, [this, paused] {
        if (paused_local_ != paused) {
            log::info("event=drain_pause paused={} by=daemon", paused);
        }
        paused_local_ = paused;
        pump();
    });
}

DrainSnapshot Drain::snapshot() const {
    DrainSnapshot s;
    s.running = running_;
    s.paused = paused();
    s.stopping = stopping_;
    for (const auto& st : stores_) {
        MailstoreStatus m;
        m.name = st.mailstore->name();
        m.breaker = st.breaker.state();
        m.next_probe_ms =
            st.breaker.state() == BreakerState::kOpen ? st.breaker.next_probe_ms() : 0;
        m.concurrency_limit = allowed(st);
        m.in_flight = st.in_flight;
        m.best_latency_ms = st.pacing.best_latency_ms();
        m.paused = st.paused;
        m.delivered = st.delivered;
        m.deferred = st.deferred;
        m.failed = st.failed;
        m.messages_delivered = st.messages_delivered;
        s.mailstores.push_back(std::move(m));
    }
    s.delivered = delivered_;
    s.deferred = deferred_;
    s.failed = failed_;
    s.expired = expired_;
    s.poison = poison_;
    s.messages_delivered = messages_delivered_;
    s.loop_turns = loop_turns_;
    const std::int64_t now_s = clock_.now_ms() / 1000;
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < kRateSeconds; ++i) {
        if (rate_second_[i] > now_s - static_cast<std::int64_t>(kRateSeconds) &&
            rate_second_[i] <= now_s) {
            sum += rate_count_[i];
        }
    }
    s.rate_per_s = static_cast<double>(sum) / static_cast<double>(kRateSeconds);
    return s;
}

void Drain::count_delivered_message() {
    ++messages_delivered_;
    const std::int64_t sec = clock_.now_ms() / 1000;
    const auto slot = static_cast<std::size_t>(sec % static_cast<std::int64_t>(kRateSeconds));
    if (rate_second_[slot] != sec) {
        rate_second_[slot] = sec;
        rate_count_[slot] = 0;
    }
    ++rate_count_[slot];
}

void Drain::wake() { wake_.cancel(); }

bool Drain::idle() const {
    const bool probing =
        std::any_of(stores_.begin(), stores_.end(), [](const Store& s) { return s.probing; });
    return in_flight_.empty() && writes_pending_ == 0 && !expiry_running_ && !probing;
}

std::uint32_t Drain::allowed(const Store& s) const {
    if (s.paused) {
        return 0;
    }
    return std::min(s.pacing.limit(), s.breaker.concurrency_cap());
}

std::size_t Drain::route(std::string_view address, std::uint32_t flags) const {
    if (dsn_store_ && (flags & spool::kFlagDsn) != 0) {
        return *dsn_store_;
    }
    if (routes_.empty()) {
        return default_store_;
    }
    const auto at = address.rfind('@');
    if (at == std::string_view::npos) {
        return default_store_;
    }
    std::string domain(address.substr(at + 1));
    std::transform(domain.begin(), domain.end(), domain.begin(), [](unsigned char c) {
        return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    });
    const auto it = routes_.find(domain);
    return it == routes_.end() ? default_store_ : it->second;
}

bool Drain::has_room(const Store& s) const {
    // The clock is read here, not once per pump: it moves while a pump runs, and a stale
    // time would make the token bucket look empty to a later check (dropping picks).
    return s.in_flight < allowed(s) && s.rate.next_available_ms() <= clock_.now_ms();
}

bool Drain::trial_waiting() const {
    for (std::size_t i = 0; i < mailstore_count_; ++i) {
        if (stores_[i].breaker.state() == BreakerState::kHalfOpen && stores_[i].in_flight == 0 &&
            has_room(stores_[i])) {
            return true;
        }
    }
    return false;
}

bool Drain::kept_from_trial(QueueId id, std::size_t store) const {
    // A half-open store is on trial: its test deliveries prefer messages with no strikes
    // there, so a suspected poison message cannot keep it from closing again.
    if (lenient_ || stores_[store].breaker.state() != BreakerState::kHalfOpen) {
        return false;
    }
    const auto it = strikes_.find(id.value);
    return it != strikes_.end() && it->second.store == store && it->second.count > 0;
}

bool Drain::can_take(std::size_t store, QueueId id) const {
    return has_room(stores_[store]) && !kept_from_trial(id, store);
}

std::vector<std::size_t> Drain::stores_with_room(const Pick& pick) const {
    std::vector<std::size_t> out;
    for (const auto& r : scheduler_.leased_recipients(pick.id)) {
        const std::size_t st = route(r, pick.flags);
        if (std::find(out.begin(), out.end(), st) == out.end() && can_take(st, pick.id)) {
            out.push_back(st);
        }
    }
    return out;
}

void Drain::set_dsn_relay(std::unique_ptr<Mailstore> relay) {
    std::string name = relay->name();
    stores_.push_back(Store{std::move(relay),
                            Breaker(std::move(name), breaker_options(*config_), clock_),
                            ConcurrencyLimit(pacing_options(*config_), clock_),
                            RateLimiter(config_->drain.max_rate, clock_)});
    dsn_store_ = stores_.size() - 1;
}

asio::awaitable<void> Drain::run() {
    const UnixMillis start = clock_.now_ms();
    next_promote_ms_ = start;
    next_pause_check_ms_ = start;
    next_expiry_ms_ = start;
    log::info("event=drain_started mailstores={} max_concurrency={}", stores_.size(),
              config_->drain.max_concurrency);
    while (!stopping_) {
        ++loop_turns_;
        try {
            housekeeping();
        } catch (const std::exception& e) {
            log::error("event=drain_housekeeping_failed error={}", log::quote(e.what()));
        }
        wake_.expires_after(kTick);
        co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
    }

    const auto deadline = std::chrono::steady_clock::now() + stop_grace_;
    while (!idle() && std::chrono::steady_clock::now() < deadline) {
        ++loop_turns_;
        wake_.expires_after(std::min<std::chrono::steady_clock::duration>(
            kTick, deadline - std::chrono::steady_clock::now()));
        co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (!idle()) {
        log::warn("event=drain_stop_cancelling in_flight={}", in_flight_.size());
    }
    while (!idle()) {
        ++loop_turns_;
        // Emitted every tick: a signal that arrives while an operation has completed but
        // its coroutine has not resumed yet is lost, and the next operation would wait.
        for (auto& [id, f] : in_flight_) {
            f.cancel->emit(asio::cancellation_type::terminal);
        }
        for (auto& s : stores_) {
            if (s.probe_cancel) {
                s.probe_cancel->emit(asio::cancellation_type::terminal);
            }
        }
        wake_.expires_after(kTick);
        co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    running_ = false;
    log::info("event=drain_stopped delivered={} deferred={} failed={} expired={}", delivered_,
              deferred_, failed_, expired_);
    auto callbacks = std::move(on_stopped_);
    on_stopped_.clear();
    for (auto& c : callbacks) {
        c();
    }
}

void Drain::housekeeping() {
    const UnixMillis now = clock_.now_ms();
    if (now >= next_pause_check_ms_) {
        next_pause_check_ms_ = now + kPauseCheckIntervalMs;
        // `spoolctl pause` runs in another process: the flag lives in the spool.
        auto meta = spool_.get_meta("paused");
        if (meta) {
            const bool p = *meta && **meta == "1";
            if (p != paused_meta_) {
                log::info("event=drain_pause paused={} by=spool", p);
            }
            paused_meta_ = p;
        }
        for (auto& s : stores_) {
            auto one = spool_.get_meta("paused." + s.mailstore->name());
            if (one) {
                const bool p = *one && **one == "1";
                if (p != s.paused) {
                    log::info("event=drain_pause mailstore={} paused={} by=spool",
                              log::quote(s.mailstore->name()), p);
                }
                s.paused = p;
            }
        }
    }
    if (now >= next_promote_ms_) {
        next_promote_ms_ = now + kPromoteIntervalMs;
        spool::Spool* spool = &spool_;
        submit_write("promote_due",
                     [spool, now](spool::Done done) { spool->promote_due(now, std::move(done)); });
    }
    if (now >= next_expiry_ms_ && !expiry_running_) {
        next_expiry_ms_ = now + kExpiryIntervalMs;
        auto ids = spool_.expired(now, kExpiryBatch);
        if (!ids) {
            log::warn("event=expiry_read_failed error={}", log::quote(ids.error().describe()));
        } else if (!ids->empty()) {
            expiry_running_ = true;
            asio::co_spawn(executor_, expire_batch(std::move(*ids)), [this](std::exception_ptr e) {
                if (e) {
                    log::error("event=expiry_failed error={}", log::quote(describe(e)));
                }
                expiry_running_ = false;
                wake();
            });
        }
    }
    feed_dsn_lane(now);
    start_probes();
    pump();
}

void Drain::note_dsn(const spool::Envelope& env) {
    bool queued = false;
    std::optional<UnixMillis> due;
    for (const auto& r : env.recipients) {
        if (r.state == spool::RcptState::kQueued) {
            queued = true;
        } else if (r.state == spool::RcptState::kDeferred) {
            due = std::min(due.value_or(r.next_attempt_ms), r.next_attempt_ms);
        }
    }
    if (queued) {
        dsn_queue_.push_back(env.id);
    } else if (due) {
        dsn_deferred_.emplace(*due, env.id);
    }
}

void Drain::feed_dsn_lane(UnixMillis now) {
    if (!dsn_store_) {
        return;
    }
    if (!dsn_scan_done_) {
        auto batch = spool_.envelopes_after(dsn_scan_after_, kDsnScanBatch);
        if (!batch) {
            log::warn("event=dsn_scan_failed error={}", log::quote(batch.error().describe()));
        } else {
            for (const auto& env : *batch) {
                if ((env.flags & spool::kFlagDsn) != 0 && !env.held) {
                    note_dsn(env);
                }
            }
            if (!batch->empty()) {
                dsn_scan_after_ = batch->back().id;
            }
            if (batch->size() < kDsnScanBatch) {
                dsn_scan_done_ = true;
                log::info("event=dsn_scan_done queued={} deferred={}", dsn_queue_.size(),
                          dsn_deferred_.size());
            }
        }
    }
    // A DSN's retry moves it back to ready through promote_due; one whose promotion has
    // not happened yet when it is tried is put back here for another second.
    while (!dsn_deferred_.empty() && dsn_deferred_.begin()->first <= now) {
        dsn_queue_.push_back(dsn_deferred_.begin()->second);
        dsn_deferred_.erase(dsn_deferred_.begin());
    }
}

void Drain::submit_write(std::string what, std::function<void(spool::Done)> submit) {
    ++writes_pending_;
    const asio::any_io_executor tracked =
        asio::prefer(executor_, asio::execution::outstanding_work.tracked);
    submit([this, tracked, what = std::move(what)](Status status) {
        asio::post(tracked, [this, what, status] {
            --writes_pending_;
            if (!status) {
                log::warn("event=spool_write_failed op={} error={}", what,
                          log::quote(status.error().describe()));
            }
        });
    });
}

void Drain::start_probes() {
    if (stopping_) {
        return;
    }
    for (std::size_t i = 0; i < stores_.size(); ++i) {
        Store& s = stores_[i];
        if (!s.breaker.probe_due()) {
            continue;
        }
        s.breaker.on_probe_started();
        s.probing = true;
        s.probe_cancel = std::make_unique<asio::cancellation_signal>();
        asio::co_spawn(
            executor_, probe_one(i),
            asio::bind_cancellation_slot(s.probe_cancel->slot(), [this, i](std::exception_ptr e) {
                Store& st = stores_[i];
                if (e) {
                    log::warn("event=probe_failed mailstore={} error={}",
                              log::quote(st.mailstore->name()), log::quote(describe(e)));
                    st.breaker.on_probe_result(false);
                }
                st.probing = false;
                // Destroyed later: this handler may be running from its slot.
                asio::post(executor_, [sig = std::move(st.probe_cancel)] {});
                pump();
            }));
    }
}

asio::awaitable<void> Drain::probe_one(std::size_t store) {
    co_await asio::this_coro::throw_if_cancelled(false);
    const Status status = co_await stores_[store].mailstore->probe();
    Store& s = stores_[store];
    if (!status) {
        log::info("event=probe mailstore={} ok=false error={}", log::quote(s.mailstore->name()),
                  log::quote(status.error().describe()));
    } else {
        log::info("event=probe mailstore={} ok=true", log::quote(s.mailstore->name()));
    }
    s.breaker.on_probe_result(status.has_value());
}

bool Drain::poison_strike(QueueId id, std::size_t index) {
    if (strikes_.size() >= kPoisonMemory && !strikes_.contains(id.value)) {
        strikes_.clear();
    }
    const Store& store = stores_[index];
    Strikes& k = strikes_[id.value];
    if (k.store != index) {
        k = Strikes{0, 0, index}; // strikes at one store say nothing about another
    }
    if (k.count == 0 || k.epoch != store.health_epoch) {
        // The first strike, or the store has worked since the last one: this message
        // keeps meeting trouble that others do not.
        ++k.count;
    }
    k.epoch = store.health_epoch;
    return k.count >= kPoisonStrikes;
}

void Drain::pump() {
    if (!running_ || stopping_ || paused() || stores_.empty()) {
        return;
    }
    const UnixMillis now = clock_.now_ms();
    if (now < local_backoff_until_ms_) {
        return;
    }
    pump_dsns();
    for (;;) {
        // The scheduler is asked only while some mailstore has room: a store that is
        // down or paused costs no scanning of its backlog.
        bool room = false;
        for (std::size_t i = 0; i < mailstore_count_ && !room; ++i) {
            room = has_room(stores_[i]);
        }
        if (!room) {
            return;
        }
        auto pick = scheduler_.next(admit_);
        if (!pick && trial_waiting()) {
            // Only messages with strikes are left for a half-open store: test with them
            // rather than not at all.
            lenient_ = true;
            pick = scheduler_.next(admit_);
        }
        if (!pick) {
            lenient_ = false;
            return;
        }
        auto stores = stores_with_room(*pick);
        lenient_ = false;
        if (!launch(*pick, std::move(stores))) {
            return;
        }
    }
}

void Drain::pump_dsns() {
    // DSNs leave through the smarthost even while the mailstore's breaker is open: an
    // expiry bounce during a long outage must not wait for the store to come back.
    if (!dsn_store_) {
        return;
    }
    while (!dsn_queue_.empty() && has_room(stores_[*dsn_store_])) {
        const QueueId id = dsn_queue_.front();
        dsn_queue_.pop_front();
        if (!scheduler_.lease(id)) {
            continue; // the scheduler handed it out already
        }
        (void)launch(Pick{id, 0, spool::kFlagDsn}, {*dsn_store_});
    }
}

bool Drain::launch(Pick pick, std::vector<std::size_t> stores) {
    const QueueId id = pick.id;
    if (stores.empty()) {
        log::debug("event=pick_dropped id={} note=\"no store of its recipients has room\"",
                   id.text());
        scheduler_.release(id);
        return false;
    }
    for (const std::size_t st : stores) {
        ++stores_[st].in_flight;
        (void)stores_[st].rate.try_acquire();
    }
    InFlight f{stores, std::make_unique<asio::cancellation_signal>()};
    auto slot = f.cancel->slot();
    in_flight_.emplace(id.value, std::move(f));
    asio::co_spawn(executor_, deliver_one(pick, std::move(stores)),
                   asio::bind_cancellation_slot(slot, [this, id](std::exception_ptr e) {
                       if (e) {
                           log::error("event=delivery_failed id={} error={}", id.text(),
                                      log::quote(describe(e)));
                       }
                       finish_delivery(id);
                   }));
    return true;
}

void Drain::finish_delivery(QueueId id) {
    const auto it = in_flight_.find(id.value);
    if (it != in_flight_.end()) {
        for (const std::size_t st : it->second.stores) {
            Store& s = stores_[st];
            if (s.in_flight > 0) {
                --s.in_flight;
            }
        }
        // Destroyed later: this runs as the handler bound to the signal's slot.
        asio::post(executor_, [sig = std::move(it->second.cancel)] {});
        in_flight_.erase(it);
    }
    scheduler_.release(id);
    if (stopping_) {
        wake();
        return;
    }
    pump();
}

asio::awaitable<DeliveryResult> Drain::deliver_group(const spool::Envelope& env,
                                                     const Group& group) {
    const QueueId id = env.id;
    DeliveryRequest request;
    request.id = id;
    request.mail_from = env.mail_from;
    request.size = env.size;
    request.smtputf8 = (env.flags & spool::kFlagSmtpUtf8) != 0;
    request.eight_bit_mime = (env.flags & spool::kFlag8BitMime) != 0;
    for (const std::uint32_t i : group.indexes) {
        request.recipients.push_back(env.recipients[i].address);
    }
    spool::Spool* spool = &spool_;
    request.read_body = [spool, id](std::uint32_t from_chunk, std::size_t max_bytes) {
        return spool->read_body(id, from_chunk, max_bytes);
    };

    const UnixMillis started = clock_.now_ms();
    DeliveryResult result;
    try {
        result = co_await stores_[group.store].mailstore->deliver(std::move(request));
    } catch (const std::exception& e) {
        // Connectors report peer trouble in the result; an exception is a bug or a
        // cancellation (stop). Either way nothing is known: keep the recipients queued.
        log::error("event=delivery_exception id={} error={}", id.text(), log::quote(e.what()));
        result = DeliveryResult{make_reply(451, "4.3.0", "delivery aborted"), true, {}};
    }
    co_await asio::this_coro::reset_cancellation_state();

    Store& s = stores_[group.store];
    bool poison = false;
    if (!stopping_) {
        // A delivery cut short by stop() says nothing about the store's health.
        const BreakerState before = s.breaker.state();
        if (result.mailstore_trouble) {
            // Only trouble met while the store is closed (working for others) is
            // evidence against the message; in half-open it is the store on trial.
            poison = before == BreakerState::kClosed && poison_strike(id, group.store);
            if (!poison) {
                s.breaker.on_trouble();
                s.pacing.on_trouble(started);
            }
        } else {
            strikes_.erase(id.value);
            ++s.health_epoch;
            s.breaker.on_success();
            s.pacing.on_success(started);
        }
        if (before != BreakerState::kClosed && s.breaker.state() == BreakerState::kClosed) {
            s.pacing.restart(); // recovered: slow start
        }
    }
    if (poison) {
        // Its trouble is its own: an ordinary temporary failure, with backoff, so the
        // rest of the queue flows and the message still gets its retries (and its
        // retention) like any other deferred one.
        ++poison_;
        log::warn(
            "event=poison_message id={} mailstore={} reply={} note=\"deferred: it met mailstore "
            "trouble {} times while the store worked for others\"",
            id.text(), log::quote(s.mailstore->name()),
            log::quote(result.session_reply ? result.session_reply->summary() : std::string()),
            kPoisonStrikes);
        result.mailstore_trouble = false;
        if (result.session_reply && !result.session_reply->transient()) {
            result.session_reply = make_reply(451, "4.3.0", "mailstore trouble with this message");
        }
    }
    co_return result;
}

asio::awaitable<void> Drain::deliver_one(Pick pick, std::vector<std::size_t> stores) {
    co_await asio::this_coro::throw_if_cancelled(false);
    auto got = spool_.get(pick.id);
    if (!got) {
        log::warn("event=delivery_read_failed id={} error={}", pick.id.text(),
                  log::quote(got.error().describe()));
        local_backoff_until_ms_ = clock_.now_ms() + kLocalErrorBackoffMs;
        co_return;
    }
    if (!*got || (*got)->held) {
        co_return; // gone or held since the scheduler looked
    }
    const spool::Envelope env = std::move(**got);
    const QueueId id = env.id;
    const bool via_relay =
        dsn_store_ && std::find(stores.begin(), stores.end(), *dsn_store_) != stores.end();

    // The queued recipients by the store they go to, for the stores a slot was taken in;
    // the others stay queued for a later round (their store is busy, down or paused).
    std::vector<Group> groups;
    for (std::uint32_t i = 0; i < env.recipients.size(); ++i) {
        if (env.recipients[i].state != spool::RcptState::kQueued) {
            continue;
        }
        const std::size_t st = route(env.recipients[i].address, env.flags);
        if (std::find(stores.begin(), stores.end(), st) == stores.end()) {
            continue;
        }
        auto g = std::find_if(groups.begin(), groups.end(),
                              [&](const Group& x) { return x.store == st; });
        if (g == groups.end()) {
            groups.push_back(Group{st, {}});
            g = groups.end() - 1;
        }
        g->indexes.push_back(i);
    }
    if (groups.empty()) {
        if (via_relay) {
            // A deferred DSN not promoted yet: the lane looks again in a second.
            for (const auto& r : env.recipients) {
                if (r.state == spool::RcptState::kDeferred) {
                    dsn_deferred_.emplace(
                        std::max(r.next_attempt_ms, clock_.now_ms() + kPromoteIntervalMs), env.id);
                    break;
                }
            }
        }
        co_return;
    }

    // One transaction per store, one after the other; one commit for all the outcomes.
    std::vector<spool::RecipientUpdate> updates;
    struct Tally {
        std::size_t store = 0;
        std::uint64_t delivered = 0;
        std::uint64_t deferred = 0;
        std::uint64_t failed = 0;
    };
    std::vector<Tally> tallies; // per store, counted once the outcomes are committed
    bool relay_trouble = false;
    for (const Group& group : groups) {
        const UnixMillis started = clock_.now_ms();
        const DeliveryResult result = co_await deliver_group(env, group);
        auto mapped = map_result(env, group.indexes, result, config_->drain, clock_.now_ms());
        if (dsn_store_ && group.store == *dsn_store_ && result.mailstore_trouble) {
            relay_trouble = true;
        }
        Tally t{group.store, 0, 0, 0};
        for (const auto& u : mapped) {
            t.delivered += u.state == spool::RcptState::kDelivered ? 1 : 0;
            t.deferred += u.state == spool::RcptState::kDeferred ? 1 : 0;
            t.failed += u.state == spool::RcptState::kFailed ? 1 : 0;
        }
        tallies.push_back(t);
        log::debug(
            "event=delivery id={} mailstore={} delivered={} deferred={} failed={} trouble={} "
            "ms={} reply={}",
            id.text(), log::quote(stores_[group.store].mailstore->name()), t.delivered, t.deferred,
            t.failed, result.mailstore_trouble, clock_.now_ms() - started,
            log::quote(mapped.empty() ? std::string() : mapped.front().response));
        std::move(mapped.begin(), mapped.end(), std::back_inserter(updates));
        if (stopping_) {
            break; // the remaining groups stay queued
        }
    }

    const UnixMillis now = clock_.now_ms();
    std::vector<spool::RecipientUpdate> bounced;
    std::uint64_t ok = 0;
    std::uint64_t deferred = 0;
    std::optional<UnixMillis> dsn_retry_due; // a DSN the smarthost deferred (4xx)
    for (const auto& u : updates) {
        ok += u.state == spool::RcptState::kDelivered ? 1 : 0;
        if (u.state == spool::RcptState::kDeferred) {
            ++deferred;
            if (via_relay) {
                dsn_retry_due = std::max(dsn_retry_due.value_or(now), u.next_attempt_ms);
            }
        }
        if (u.state == spool::RcptState::kFailed) {
            bounced.push_back(u);
        }
    }
    std::optional<spool::NewMessage> dsn;
    if (!bounced.empty() && make_dsn_ && !env.mail_from.empty()) {
        try {
            dsn = make_dsn_(env, bounced);
        } catch (const std::exception& e) {
            log::error("event=dsn_build_failed id={} error={}", id.text(), log::quote(e.what()));
        }
    }

    const std::optional<QueueId> dsn_id =
        dsn ? std::optional<QueueId>(dsn->envelope.id) : std::nullopt;
    spool::Spool* spool = &spool_;
    std::function<void(spool::Done)> submit = [spool, id, updates = std::move(updates),
                                               dsn = std::move(dsn)](spool::Done done) mutable {
        spool->record_outcome(id, std::move(updates), std::move(dsn), std::move(done));
    };
    auto commit = async_spool_write(executor_, std::move(submit), asio::use_awaitable);
    const Status status = co_await std::move(commit);
    if (!status) {
        // Not recorded: the message stays as it was and will be delivered again (the
        // at-least-once window). Back off so a broken spool is not hammered.
        log::error("event=outcome_write_failed id={} error={}", id.text(),
                   log::quote(status.error().describe()));
        local_backoff_until_ms_ = clock_.now_ms() + kLocalErrorBackoffMs;
        co_return;
    }
    if (dsn_id && dsn_store_) {
        dsn_queue_.push_back(*dsn_id);
    }
    if (relay_trouble) {
        dsn_queue_.push_back(id); // the smarthost was down: try again when it is back
    } else if (dsn_retry_due) {
        // The smarthost said 4xx: the retry goes through the lane too, not behind the
        // mailstore's breaker.
        dsn_deferred_.emplace(*dsn_retry_due, id);
    }
    delivered_ += ok;
    deferred_ += deferred;
    failed_ += bounced.size();
    if (ok > 0) {
        count_delivered_message();
    }
    for (const Tally& t : tallies) {
        Store& st = stores_[t.store];
        st.delivered += t.delivered;
        st.deferred += t.deferred;
        st.failed += t.failed;
        st.messages_delivered += t.delivered > 0 ? 1 : 0;
    }
}

asio::awaitable<void> Drain::expire_batch(std::vector<QueueId> ids) {
    spool::Spool* spool = &spool_;
    for (const QueueId id : ids) {
        if (stopping_) {
            co_return;
        }
        // Leased: a delivery in flight decides first; the next round sees it again.
        if (!scheduler_.lease(id)) {
            continue;
        }
        auto got = spool_.get(id);
        if (!got || !*got) {
            scheduler_.release(id);
            continue;
        }
        const spool::Envelope env = std::move(**got);
        const policy::ExpiryAction action = expiry_action(*config_, env.klass);
        std::function<void(spool::Done)> submit;
        std::uint64_t expired = 0;
        std::optional<QueueId> dsn_id;
        if (action == policy::ExpiryAction::kHold) {
            submit = [spool, id](spool::Done done) { spool->hold_expired(id, std::move(done)); };
        } else {
            std::vector<spool::RecipientUpdate> updates;
            for (std::uint32_t i = 0; i < env.recipients.size(); ++i) {
                if (!final_state(env.recipients[i].state)) {
                    spool::RecipientUpdate u;
                    u.index = i;
                    u.state = spool::RcptState::kExpired;
                    u.response = std::string(kExpiredResponse);
                    u.count_attempt = false;
                    updates.push_back(std::move(u));
                }
            }
            expired = updates.size();
            std::optional<spool::NewMessage> dsn;
            if (action == policy::ExpiryAction::kBounce && !updates.empty() && make_dsn_ &&
                !env.mail_from.empty()) {
                try {
                    dsn = make_dsn_(env, updates);
                } catch (const std::exception& e) {
                    log::error("event=dsn_build_failed id={} error={}", id.text(),
                               log::quote(e.what()));
                }
            }
            if (dsn) {
                dsn_id = dsn->envelope.id;
            }
            submit = [spool, id, updates, dsn](spool::Done done) mutable {
                spool->record_outcome(id, std::move(updates), std::move(dsn), std::move(done));
            };
        }
        log::info("event=expire id={} class={} action={} recipients={}", id.text(), env.klass,
                  to_string(action), expired);
        auto commit = async_spool_write(executor_, std::move(submit), asio::use_awaitable);
        const Status status = co_await std::move(commit);
        scheduler_.release(id);
        if (!status) {
            log::error("event=expire_write_failed id={} error={}", id.text(),
                       log::quote(status.error().describe()));
            co_return;
        }
        expired_ += expired;
        if (dsn_id && dsn_store_) {
            dsn_queue_.push_back(*dsn_id);
            wake();
        }
    }
}

} // namespace spoold::drain
