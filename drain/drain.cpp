#include "drain/drain.hpp"

#include <algorithm>
#include <numeric>
#include <utility>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>

#include "common/log.hpp"
#include "common/escaped.hpp"
#include "drain/recipient_groups.hpp"

namespace spoold::drain {
namespace {

namespace asio = boost::asio;

constexpr std::int64_t kLocalErrorBackoffMs = 1000; // after a failed spool read or write

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

MailboxBackoffOptions backoff_options(const policy::Config& c) {
    return MailboxBackoffOptions{c.drain.retry_min, c.drain.retry_max};
}

bool contains(const std::vector<std::size_t>& v, std::size_t x) {
    return std::find(v.begin(), v.end(), x) != v.end();
}

// For logging.format: postfix (else none): each recipient's store as a Postfix service and relay
// (the DSN smarthost, in no mailstore list, is "smtp").
std::vector<MailLogRoute> mail_log_routes(const spool::Envelope& env,
                                          const std::vector<Group>& groups,
                                          const std::vector<Store>& stores,
                                          const policy::Config& config) {
    if (log::format() != log::Format::kPostfix) {
        return {};
    }
    std::vector<MailLogRoute> out(env.recipients.size());
    for (const Group& g : groups) {
        const std::string& name = stores[g.store].name();
        std::string service = "smtp";
        for (const auto& m : config.mailstores) {
            if (m.name == name) {
                service = m.kind == policy::MailstoreKind::kMaildir ? "virtual"
                          : m.kind == policy::MailstoreKind::kLmtp  ? "lmtp"
                                                                    : "smtp";
            }
        }
        for (const auto i : g.indexes) {
            if (i < out.size()) {
                out[i] = MailLogRoute{service, name};
            }
        }
    }
    return out;
}

} // namespace

Drain::Drain(asio::any_io_executor executor, spool::Spool& spool, const policy::Config& config,
             std::vector<std::unique_ptr<Mailstore>> mailstores, const Clock& clock,
             DsnBuilder make_dsn)
    : executor_(std::move(executor)), spool_(spool),
      config_(std::make_shared<const policy::Config>(config)), clock_(clock),
      backoff_(backoff_options(config), clock), stats_(clock),
      scheduler_(spool, scheduler_options(config), clock),
      outcomes_(executor_, spool, std::move(make_dsn)),
      groups_(spool, stores_, poison_, backoff_, mailstore_count_, stats_, config_, stopping_,
              clock),
      expiry_(
          executor_, spool, scheduler_, outcomes_, stats_, lane_, config_, stopping_,
          [this] { wake(); }, clock),
      delays_(
          executor_, spool, outcomes_, lane_, config_, stopping_, [this] { wake(); }, clock),
      sweep_(
          executor_, spool, stopping_, [this] { wake(); }, clock),
      wake_(executor_) {
    stores_.reserve(mailstores.size() + 1); // + the DSN relay
    for (auto& m : mailstores) {
        stores_.emplace_back(std::move(m), config, clock);
    }
    mailstore_count_ = stores_.size();
    breaker_seen_.assign(mailstore_count_, BreakerState::kClosed);
    routes_.rebuild(config, running_mailstores());
    admit_ = [this](QueueId id, const std::vector<std::string>& recipients, std::uint32_t flags) {
        if (mailstore_count_ == 1 && (flags & spool::kFlagDsn) == 0) {
            // pump() asks only while the one mailstore has room.
            return !kept_from_trial(id, 0);
        }
        return std::any_of(recipients.begin(), recipients.end(), [&](const std::string& r) {
            return can_take(routes_.route(r, flags), id);
        });
    };
    room_ = [this](std::string_view domain) {
        const std::size_t store = routes_.route_domain(domain);
        return store < stores_.size() && stores_[store].has_room();
    };
    // Every message this process adds (an intake commit, a DSN spooled with an outcome, an
    // expiry or a delay warning) is heard here, from the spool's write path; another
    // process's additions (spoolctl import) move the ready epoch instead.
    spool_.on_arrival([this](QueueId id) { arrived(id); });
}

Drain::~Drain() {
    spool_.on_arrival({}); // returns once a call in progress ended: none comes after
    if (running_) {
        log::error("event=drain_destroyed_running note=\"stop() did not complete first\"");
    }
}

std::vector<std::string> Drain::running_mailstores() const {
    std::vector<std::string> names;
    for (std::size_t i = 0; i < mailstore_count_; ++i) {
        names.push_back(stores_[i].name());
    }
    return names;
}

void Drain::set_dsn_relay(std::unique_ptr<Mailstore> relay) {
    stores_.emplace_back(std::move(relay), *config_, clock_);
    routes_.set_dsn_relay(stores_.size() - 1);
    lane_.open();
}

bool Drain::set_budget(const std::string& name, Budget& budget) {
    for (std::size_t i = 0; i < mailstore_count_; ++i) {
        if (stores_[i].name() == name) {
            stores_[i].set_budget(budget);
            budget.set_wake([this] { wake(); });
            return true;
        }
    }
    return false;
}

void Drain::start() {
    asio::post(executor_, [this] {
        if (started_) {
            return;
        }
        started_ = true;
        running_ = true;
        asio::co_spawn(executor_, run(), [this](const std::exception_ptr& e) {
            if (e) {
                log::error("event=drain_loop_failed error={}", log::quote(describe_escaped(e)));
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
            outcomes_.flush(); // no delivery starts now to share their commit
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
    const std::shared_ptr<const policy::Config> before = std::exchange(config_, std::move(config));
    expiry_.review(*before);
    for (auto& s : stores_) {
        s.reconfigure(*config_);
    }
    backoff_.reconfigure(backoff_options(*config_));
    routes_.rebuild(*config_, running_mailstores());
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
        s.mailstores.push_back(st.status());
    }
    stats_.fill(s);
    s.loop_turns = loop_turns_;
    s.idle = idle();
    s.delay_warnings = delays_.sent();
    return s;
}

void Drain::arrived(QueueId id) {
    asio::post(executor_, [this, id] {
        scheduler_.arrived(id);
        pump(); // new mail for a store with room leaves now, not at the next tick
    });
}

void Drain::wake() { wake_.cancel(); }

bool Drain::idle() const {
    const bool probing =
        std::any_of(stores_.begin(), stores_.end(), [](const Store& s) { return s.probing(); });
    return in_flight_.empty() && writes_pending_ == 0 && !expiry_.running() && !delays_.running() &&
           !sweep_.running() && !probing;
}

asio::awaitable<void> Drain::run() {
    const UnixMillis start = clock_.now_ms();
    next_promote_ms_ = start;
    next_pause_check_ms_ = start;
    expiry_.start(start);
    sweep_.start(start);
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
            s.cancel_probe();
        }
        wake_.expires_after(kTick);
        co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
    }
    running_ = false;
    const Tally& total = stats_.total();
    log::info("event=drain_stopped delivered={} deferred={} failed={} expired={}", total.delivered,
              total.deferred, total.failed, stats_.expired());
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
        check_pause_flags();
    }
    if (now >= next_promote_ms_ && !promoting_) {
        next_promote_ms_ = now + kPromoteIntervalMs;
        promote(now);
    }
    expiry_.tick(now);
    delays_.tick(now);
    // Ticked after them: a job with more to do has started its next batch by now (or, the
    // delay warnings' walk, goes on reading at the next turn).
    sweep_.tick(now, promoting_ || expiry_.running() || expiry_.reviewing() || delays_.busy(now));
    lane_.feed(spool_, now);
    for (auto& s : stores_) {
        s.tick();
    }
    start_probes();
    probe_groups();
    pump();
}

void Drain::probe_groups() {
    for (std::size_t i = 0; i < mailstore_count_; ++i) {
        const BreakerState state = stores_[i].breaker().state();
        if (state == BreakerState::kClosed && breaker_seen_[i] != BreakerState::kClosed) {
            backoff_.probe_now(i); // what waited through the outage need not wait a step more
        }
        breaker_seen_[i] = state;
    }
    if (!paused()) {
        release_parked(backoff_.due_probes());
    }
}

void Drain::release_parked(const std::vector<QueueId>& ids) {
    const asio::any_io_executor tracked =
        asio::prefer(executor_, asio::execution::outstanding_work.tracked);
    for (const QueueId id : ids) {
        ++writes_pending_;
        spool_.flush(id, [this, tracked, id](const Status& status) {
            asio::post(tracked, [this, id, status] {
                --writes_pending_;
                if (!status) {
                    // Gone meanwhile (delivered, expired, deleted): nothing waits.
                    log::debug("event=parked_release_failed id={} error={}", id.text(),
                               log::quote(status.error().describe()));
                    return;
                }
                scheduler_.recheck({id});
                wake();
            });
        });
    }
}

void Drain::promote(UnixMillis now) {
    // The ids the promotion will move, read first: the scheduler's cursors are past them.
    const std::size_t batch = promote_pacer_.size();
    auto due = spool_.due(now, batch);
    if (!due) {
        log::warn("event=promote_read_failed error={}", log::quote(due.error().describe()));
        return;
    }
    if (due->empty()) {
        return;
    }
    promoting_ = true;
    promote_started_ms_ = now;
    ++writes_pending_;
    const asio::any_io_executor tracked =
        asio::prefer(executor_, asio::execution::outstanding_work.tracked);
    spool_.promote_due(
        now, batch, [this, tracked, batch, ids = std::move(*due)](const Status& status) mutable {
            asio::post(tracked, [this, status, batch, ids = std::move(ids)] {
                --writes_pending_;
                promoting_ = false;
                if (!status) {
                    log::warn("event=spool_write_failed op=promote_due error={}",
                              log::quote(status.error().describe()));
                    return;
                }
                promote_pacer_.took(ids.size(), clock_.now_ms() - promote_started_ms_);
                scheduler_.recheck(ids);
                if (ids.size() == batch && !stopping_) {
                    next_promote_ms_ = clock_.now_ms(); // more are due: the next batch at once
                    wake();
                }
            });
        });
}

void Drain::check_pause_flags() {
    // `spoolctl pause` runs in another process: the flags live in the spool.
    auto meta = spool_.get_meta("paused");
    if (meta) {
        const bool p = *meta && **meta == "1";
        if (p != paused_meta_) {
            log::info("event=drain_pause paused={} by=spool", p);
        }
        paused_meta_ = p;
    }
    for (auto& s : stores_) {
        auto one = spool_.get_meta("paused." + s.name());
        if (one) {
            const bool p = *one && **one == "1";
            if (p != s.paused()) {
                log::info("event=drain_pause mailstore={} paused={} by=spool", log::quote(s.name()),
                          p);
            }
            s.set_paused(p);
        }
    }
}

bool Drain::any_mailstore_has_room() const {
    for (std::size_t i = 0; i < mailstore_count_; ++i) {
        if (stores_[i].has_room()) {
            return true;
        }
    }
    return false;
}

bool Drain::trial_waiting() const {
    for (std::size_t i = 0; i < mailstore_count_; ++i) {
        if (stores_[i].breaker().state() == BreakerState::kHalfOpen &&
            stores_[i].in_flight() == 0 && stores_[i].has_room()) {
            return true;
        }
    }
    return false;
}

bool Drain::kept_from_trial(QueueId id, std::size_t store) const {
    // A half-open store is on trial: its test deliveries prefer messages with no strikes
    // there, so a suspected poison message cannot keep it from closing again.
    if (lenient_ || stores_[store].breaker().state() != BreakerState::kHalfOpen) {
        return false;
    }
    return poison_.suspect(id, store);
}

bool Drain::can_take(std::size_t store, QueueId id) const {
    return stores_[store].has_room() && !kept_from_trial(id, store);
}

std::vector<std::size_t> Drain::stores_with_room(const Pick& pick) {
    std::vector<std::size_t> out;
    for (const auto& r : scheduler_.leased_recipients(pick.id)) {
        const std::size_t st = routes_.route(r, pick.flags);
        // The shared budget last: its refusal counts as demand, so only a store that could
        // take the message otherwise asks it.
        if (!contains(out, st) && can_take(st, pick.id) && stores_[st].admits(pick.klass)) {
            out.push_back(st);
        }
    }
    return out;
}

void Drain::pump() {
    if (!running_ || stopping_ || paused() || stores_.empty()) {
        return;
    }
    if (clock_.now_ms() < local_backoff_until_ms_) {
        return;
    }
    pump_dsns();
    // The scheduler is asked only while some mailstore has room: a store that is down or
    // paused costs no scanning of its backlog.
    while (any_mailstore_has_room() && commits_have_room()) {
        auto pick = scheduler_.next(admit_, room_);
        if (!pick && trial_waiting()) {
            // Only messages with strikes are left for a half-open store: test with them
            // rather than not at all.
            lenient_ = true;
            pick = scheduler_.next(admit_, room_);
        }
        if (!pick) {
            lenient_ = false;
            return;
        }
        if (parks_only(*pick)) {
            lenient_ = false;
            if (!park(*pick)) {
                return;
            }
            continue;
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
    const auto relay = routes_.dsn_relay();
    if (!relay) {
        return;
    }
    while (stores_[*relay].has_room() && commits_have_room()) {
        const auto id = lane_.next();
        if (!id) {
            return;
        }
        if (!scheduler_.lease(*id)) {
            continue; // the scheduler handed it out already
        }
        (void)launch(Pick{*id, 0, spool::kFlagDsn}, {*relay});
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
        stores_[st].take_slot(pick.klass);
    }
    InFlight f{stores, pick.klass, std::make_unique<asio::cancellation_signal>()};
    spawn(pick, std::move(f), deliver_one(pick, std::move(stores)));
    return true;
}

bool Drain::parks_only(const Pick& pick) const {
    const std::vector<std::string>& recipients = scheduler_.leased_recipients(pick.id);
    return !recipients.empty() &&
           std::all_of(recipients.begin(), recipients.end(), [&](const std::string& r) {
               const std::size_t store = routes_.route(r, pick.flags);
               return store < mailstore_count_ && backoff_.waits(store, r, pick.id);
           });
}

bool Drain::park(Pick pick) {
    if (parking_ >= kMaxParking) {
        scheduler_.release(pick.id);
        return false;
    }
    ++parking_;
    InFlight f{{}, pick.klass, std::make_unique<asio::cancellation_signal>(), true};
    spawn(pick, std::move(f), park_one(pick));
    return true;
}

void Drain::spawn(const Pick& pick, InFlight f, asio::awaitable<void> work) {
    const QueueId id = pick.id;
    auto slot = f.cancel->slot();
    in_flight_.emplace(id.value, std::move(f));
    asio::co_spawn(executor_, std::move(work),
                   asio::bind_cancellation_slot(slot, [this, id](const std::exception_ptr& e) {
                       if (e) {
                           log::error("event=delivery_failed id={} error={}", id.text(),
                                      log::quote(describe_escaped(e)));
                       }
                       finish_delivery(id);
                   }));
}

std::optional<spool::Envelope> Drain::read_queued(QueueId id) {
    auto got = spool_.get(id);
    if (!got) {
        log::warn("event=delivery_read_failed id={} error={}", id.text(),
                  log::quote(got.error().describe()));
        local_backoff_until_ms_ = clock_.now_ms() + kLocalErrorBackoffMs;
        return std::nullopt;
    }
    if (!*got || (*got)->held) {
        return std::nullopt; // gone or held since the scheduler looked
    }
    return std::move(**got);
}

asio::awaitable<void> Drain::deliver_one(Pick pick, std::vector<std::size_t> stores) {
    co_await asio::this_coro::throw_if_cancelled(false);
    auto got = read_queued(pick.id);
    if (!got) {
        co_return;
    }
    spool::Envelope env = std::move(*got);
    const QueueId id = env.id;
    const auto relay = routes_.dsn_relay();
    const bool via_relay = relay && contains(stores, *relay);

    std::vector<Group> groups = group_by_store(env, routes_, stores);
    if (groups.empty()) {
        if (via_relay) {
            // A deferred DSN not promoted yet: the lane looks again in a second.
            lane_.not_ready(env, clock_.now_ms() + kPromoteIntervalMs);
        }
        co_return;
    }

    std::vector<MailLogRoute> log_routes = mail_log_routes(env, groups, stores_, *config_);
    // One transaction per store, one after the other; one commit for all the outcomes.
    GroupsDelivered delivered = co_await groups_.deliver(env, std::move(groups));
    conversation_ended(id);
    bool relay_trouble = false;
    std::vector<std::pair<std::size_t, Tally>> by_store;
    for (const GroupResult& g : delivered.groups) {
        relay_trouble = relay_trouble || (relay && g.store == *relay && g.trouble);
        by_store.emplace_back(g.store, g.tally);
    }
    const std::optional<UnixMillis> retry_due =
        via_relay ? DsnLane::retry_due(delivered.updates, clock_.now_ms()) : std::nullopt;

    if (!co_await record(std::move(env), std::move(delivered.updates),
                         std::move(delivered.handoffs), std::move(log_routes))) {
        co_return;
    }
    release_parked(delivered.release);
    if (via_relay) {
        lane_.after_attempt(id, relay_trouble, retry_due);
    }
    stats_.count_outcomes(by_store);
}

asio::awaitable<void> Drain::park_one(Pick pick) {
    co_await asio::this_coro::throw_if_cancelled(false);
    auto got = read_queued(pick.id);
    if (!got) {
        co_return;
    }
    spool::Envelope env = std::move(*got);
    std::vector<std::size_t> mailstores(mailstore_count_);
    std::iota(mailstores.begin(), mailstores.end(), std::size_t{0});
    std::vector<Group> groups = group_by_store(env, routes_, mailstores);
    std::vector<MailLogRoute> log_routes = mail_log_routes(env, groups, stores_, *config_);
    GroupsDelivered parked = groups_.park(env, std::move(groups));
    if (parked.updates.empty()) {
        co_return; // its group was answered meanwhile: the scheduler hands it out again
    }
    (void)co_await record(std::move(env), std::move(parked.updates), std::move(parked.handoffs),
                          std::move(log_routes));
}

asio::awaitable<bool> Drain::record(spool::Envelope env,
                                    std::vector<spool::RecipientUpdate> updates,
                                    std::vector<Handoff> handoffs,
                                    std::vector<MailLogRoute> log_routes) {
    const QueueId id = env.id;
    const std::vector<MailLogLine> log_lines =
        log_routes.empty() ? std::vector<MailLogLine>{}
                           : outcome_lines(env, updates, log_routes, clock_.now_ms());
    const OutcomeWriter::Committed committed =
        co_await outcomes_.commit(std::move(env), std::move(updates), true, std::move(handoffs));
    if (!committed.status && committed.status.error().kind == ErrorKind::kNotFound) {
        // Removed while it was being delivered (spoolctl delete): nothing to record, and
        // nothing wrong with the spool, so the drain goes on at once.
        log::info("event=outcome_dropped id={} reason=\"message removed during delivery\"",
                  id.text());
        co_return false;
    }
    if (!committed.status) {
        // Not recorded: the message stays as it was and will be delivered again (the
        // at-least-once window). Back off so a broken spool is not hammered.
        log::error("event=outcome_write_failed id={} error={}", id.text(),
                   log::quote(committed.status.error().describe()));
        local_backoff_until_ms_ = clock_.now_ms() + kLocalErrorBackoffMs;
        co_return false;
    }
    for (const MailLogLine& l : log_lines) {
        log::mail(l.service, l.text); // only what the spool now says
    }
    if (committed.dsn) {
        lane_.send(*committed.dsn);
    }
    co_return true;
}

bool Drain::commits_have_room() {
    if (committing_ < config_->drain.max_concurrency) {
        return true;
    }
    outcomes_.flush(); // no delivery starts before one commits: no lingering for others
    return false;
}

void Drain::conversation_ended(QueueId id) {
    const auto it = in_flight_.find(id.value);
    if (it == in_flight_.end() || it->second.committing) {
        return;
    }
    for (const std::size_t st : it->second.stores) {
        stores_[st].release_slot(it->second.klass);
    }
    it->second.stores.clear();
    it->second.committing = true;
    ++committing_;
    pump(); // the next message takes the slot while this outcome commits
}

void Drain::finish_delivery(QueueId id) {
    const auto it = in_flight_.find(id.value);
    if (it != in_flight_.end()) {
        for (const std::size_t st : it->second.stores) {
            stores_[st].release_slot(it->second.klass);
        }
        if (it->second.parking) {
            --parking_;
        }
        if (it->second.committing) {
            --committing_;
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

void Drain::start_probes() {
    if (stopping_) {
        return;
    }
    for (std::size_t i = 0; i < stores_.size(); ++i) {
        Store& s = stores_[i];
        // In a fleet one node probes for all; the others take its result (Store::tick).
        if (!s.breaker().probe_due() || !s.budget().may_probe()) {
            continue;
        }
        asio::co_spawn(
            executor_, probe_one(i),
            asio::bind_cancellation_slot(s.start_probe(), [this, i](const std::exception_ptr& e) {
                Store& st = stores_[i];
                if (e) {
                    log::warn("event=probe_failed mailstore={} error={}", log::quote(st.name()),
                              log::quote(describe_escaped(e)));
                    st.breaker().on_probe_result(false);
                    st.budget().probe_done(false);
                }
                st.end_probe(executor_);
                pump();
            }));
    }
}

asio::awaitable<void> Drain::probe_one(std::size_t store) {
    co_await asio::this_coro::throw_if_cancelled(false);
    const Status status = co_await stores_[store].mailstore().probe();
    Store& s = stores_[store];
    if (!status) {
        log::info("event=probe mailstore={} ok=false error={}", log::quote(s.name()),
                  log::quote(status.error().describe()));
    } else {
        log::info("event=probe mailstore={} ok=true", log::quote(s.name()));
    }
    s.breaker().on_probe_result(status.has_value());
    s.budget().probe_done(status.has_value());
}

} // namespace spoold::drain
