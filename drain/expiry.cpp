#include "drain/expiry.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <string_view>

#include "common/log.hpp"
#include "common/escaped.hpp"
#include "policy/retention.hpp"

namespace spoold::drain {
namespace {

namespace asio = boost::asio;

constexpr std::string_view kExpiredResponse = "expired: retention period of its class ran out";

std::string_view to_string(policy::ExpiryAction a) {
    switch (a) {
    case policy::ExpiryAction::kBounce: return "bounce";
    case policy::ExpiryAction::kHold: return "hold";
    case policy::ExpiryAction::kDiscard: return "discard";
    }
    return "unknown";
}

} // namespace

std::vector<spool::RecipientUpdate> expire_recipients(const spool::Envelope& env) {
    std::vector<spool::RecipientUpdate> updates;
    for (std::uint32_t i = 0; i < env.recipients.size(); ++i) {
        if (!spool::is_final(env.recipients[i].state)) {
            spool::RecipientUpdate u;
            u.index = i;
            u.state = spool::RcptState::kExpired;
            u.response = std::string(kExpiredResponse);
            u.count_attempt = false;
            updates.push_back(std::move(u));
        }
    }
    return updates;
}

Expiry::Expiry(asio::any_io_executor executor, spool::Spool& spool, Scheduler& scheduler,
               OutcomeWriter& outcomes, DrainStats& stats, DsnLane& lane,
               const std::shared_ptr<const policy::Config>& config, const bool& stopping,
               std::function<void()> wake, const Clock& clock)
    : executor_(std::move(executor)), spool_(spool), scheduler_(scheduler), outcomes_(outcomes),
      stats_(stats), lane_(lane), config_(config), stopping_(stopping), wake_(std::move(wake)),
      clock_(clock) {}

void Expiry::review(const policy::Config& before) {
    if (!policy::same_retention(before, *config_)) {
        log::info("event=expiry_review reason={}", log::quote("a class's retention changed"));
        review_ = QueueId{};
    }
}

void Expiry::run(asio::awaitable<void> batch) {
    running_ = true;
    asio::co_spawn(executor_, std::move(batch), [this](const std::exception_ptr& e) {
        if (e) {
            log::error("event=expiry_failed error={}", log::quote(describe_escaped(e)));
        }
        running_ = false;
        wake_();
    });
}

void Expiry::tick(UnixMillis now) {
    if (running_ || stopping_) {
        return;
    }
    if (review_ && review_batch(now)) {
        return;
    }
    if (now < next_ms_) {
        return;
    }
    next_ms_ = now + kExpiryIntervalMs;
    const std::size_t batch = pacer_.size();
    auto ids = spool_.expired(now, batch);
    if (!ids) {
        log::warn("event=expiry_read_failed error={}", log::quote(ids.error().describe()));
        return;
    }
    if (ids->empty()) {
        return;
    }
    if (ids->size() == batch) {
        next_ms_ = now; // more are due: the next batch at the next tick
    }
    run(expire_batch(std::move(*ids), now));
}

bool Expiry::review_batch(UnixMillis now) {
    auto envs = spool_.envelopes_after(*review_, kReviewBatch);
    if (!envs) {
        log::warn("event=expiry_review_read_failed error={}", log::quote(envs.error().describe()));
        return false; // tried again next turn
    }
    if (envs->empty()) {
        log::info("event=expiry_review_done");
        review_.reset();
        next_ms_ = now; // what the new retention expired is acted on now
        return false;
    }
    review_ = envs->back().id;
    std::vector<std::pair<QueueId, spool::Reclassification>> changes;
    for (const spool::Envelope& env : *envs) {
        const UnixMillis expires = policy::expiry_ms(*config_, env.klass, env.arrival_ms);
        if (expires != env.expires_ms) {
            changes.emplace_back(env.id, spool::Reclassification{env.klass, expires, now, false});
        }
    }
    if (!changes.empty()) {
        run(write_changes(std::move(changes), "expiry_review_write_failed"));
    }
    return true;
}

asio::awaitable<void>
Expiry::write_changes(std::vector<std::pair<QueueId, spool::Reclassification>> changes,
                      std::string_view failed_event) {
    const std::size_t n = changes.size();
    const Status st = co_await outcomes_.reclassify(std::move(changes));
    if (!st) {
        // The messages keep their stored expiry; the drain computes it again when it comes.
        log::error("event={} messages={} error={}", failed_event, n,
                   log::quote(st.error().describe()));
        co_return;
    }
    log::debug("event=expiry_rewritten messages={}", n);
}

asio::awaitable<void> Expiry::expire_batch(std::vector<QueueId> ids, UnixMillis now) {
    constexpr std::size_t kYieldEvery = 64; // DSNs built between two turns of the I/O thread
    std::vector<QueueId> leased;
    std::vector<spool::Expiry> items;
    std::vector<std::uint64_t> recipients; // expired per item
    std::vector<std::optional<QueueId>> dsns;
    // Messages today's retention gives a later expiry than the stored one.
    std::vector<std::pair<QueueId, spool::Reclassification>> later;
    for (const QueueId id : ids) {
        if (stopping_) {
            break;
        }
        // Leased: a delivery in flight decides first; a later batch sees it again.
        if (!scheduler_.lease(id)) {
            continue;
        }
        leased.push_back(id);
        auto got = spool_.get(id);
        if (!got || !*got) {
            continue;
        }
        const spool::Envelope& env = **got;
        // The stored expiry is what the configuration said when it was written; today's
        // retention decides (a reload made it longer or 0, or spoolctl moved the message).
        const UnixMillis expires = policy::expiry_ms(*config_, env.klass, env.arrival_ms);
        if (!policy::is_expired(expires, now)) {
            later.emplace_back(id, spool::Reclassification{env.klass, expires, now, false});
            continue;
        }
        const policy::ExpiryAction action = policy::expiry_action(*config_, env.klass);
        spool::Expiry e;
        e.id = id;
        std::uint64_t expired = 0;
        if (action == policy::ExpiryAction::kHold) {
            e.hold = true;
        } else {
            const auto updates = expire_recipients(env);
            expired = updates.size();
            e.response = std::string(kExpiredResponse);
            if (action == policy::ExpiryAction::kBounce) {
                e.dsn = outcomes_.build_dsn(env, updates);
            }
        }
        log::info("event=expire id={} class={} action={} recipients={}", id.text(), env.klass,
                  to_string(action), expired);
        dsns.push_back(e.dsn ? std::optional<QueueId>(e.dsn->envelope.id) : std::nullopt);
        recipients.push_back(expired);
        items.push_back(std::move(e));
        if (items.size() % kYieldEvery == 0) {
            co_await asio::post(executor_, asio::use_awaitable);
        }
    }
    if (!items.empty() && !stopping_) {
        const std::size_t n = items.size();
        const UnixMillis submitted = clock_.now_ms();
        const OutcomeWriter::Batch done = co_await outcomes_.expire(std::move(items), now);
        pacer_.took(n, clock_.now_ms() - submitted);
        if (!done.status) {
            log::error("event=expire_write_failed messages={} error={}", dsns.size(),
                       log::quote(done.status.error().describe()));
        } else {
            for (std::size_t i = 0; i < done.items.size(); ++i) {
                if (!done.items[i]) {
                    log::info("event=expire_skipped error={}",
                              log::quote(done.items[i].error().describe()));
                    continue;
                }
                stats_.count_expired(recipients[i]);
                if (dsns[i] && lane_.is_open()) {
                    lane_.send(*dsns[i]);
                }
            }
        }
    }
    if (!later.empty() && !stopping_) {
        co_await write_changes(std::move(later), "expire_write_failed");
    }
    for (const QueueId id : leased) {
        scheduler_.release(id);
    }
}

} // namespace spoold::drain
