#include "drain/expiry.hpp"

#include <boost/asio/co_spawn.hpp>
#include <string_view>

#include "common/log.hpp"
#include "drain/escaped.hpp"

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

policy::ExpiryAction expiry_action(const policy::Config& config, spool::ClassId klass) {
    return klass < config.classes.size() ? config.classes[klass].on_expiry
                                         : policy::ExpiryAction::kBounce;
}

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
               std::function<void()> wake)
    : executor_(std::move(executor)), spool_(spool), scheduler_(scheduler), outcomes_(outcomes),
      stats_(stats), lane_(lane), config_(config), stopping_(stopping), wake_(std::move(wake)) {}

void Expiry::tick(UnixMillis now) {
    if (now < next_ms_ || running_) {
        return;
    }
    next_ms_ = now + kExpiryIntervalMs;
    auto ids = spool_.expired(now, kExpiryBatch);
    if (!ids) {
        log::warn("event=expiry_read_failed error={}", log::quote(ids.error().describe()));
        return;
    }
    if (ids->empty()) {
        return;
    }
    running_ = true;
    asio::co_spawn(executor_, expire_batch(std::move(*ids)), [this](std::exception_ptr e) {
        if (e) {
            log::error("event=expiry_failed error={}", log::quote(describe_escaped(e)));
        }
        running_ = false;
        wake_();
    });
}

asio::awaitable<void> Expiry::expire_batch(std::vector<QueueId> ids) {
    for (const QueueId id : ids) {
        if (stopping_) {
            co_return;
        }
        // Leased: a delivery in flight decides first; the next round sees it again.
        if (!scheduler_.lease(id)) {
            continue;
        }
        const bool ok = co_await expire_one(id);
        scheduler_.release(id);
        if (!ok) {
            co_return;
        }
    }
}

asio::awaitable<bool> Expiry::expire_one(QueueId id) {
    auto got = spool_.get(id);
    if (!got || !*got) {
        co_return true;
    }
    spool::Envelope env = std::move(**got);
    const policy::ExpiryAction action = expiry_action(*config_, env.klass);
    std::vector<spool::RecipientUpdate> updates;
    if (action != policy::ExpiryAction::kHold) {
        updates = expire_recipients(env);
    }
    const std::uint64_t expired = updates.size();
    log::info("event=expire id={} class={} action={} recipients={}", id.text(), env.klass,
              to_string(action), expired);
    OutcomeWriter::Committed committed;
    if (action == policy::ExpiryAction::kHold) {
        committed.status = co_await outcomes_.hold_expired(id);
    } else {
        committed = co_await outcomes_.commit(std::move(env), std::move(updates),
                                              action == policy::ExpiryAction::kBounce);
    }
    if (!committed.status) {
        log::error("event=expire_write_failed id={} error={}", id.text(),
                   log::quote(committed.status.error().describe()));
        co_return false;
    }
    stats_.count_expired(expired);
    if (committed.dsn && lane_.is_open()) {
        lane_.send(*committed.dsn);
        wake_();
    }
    co_return true;
}

} // namespace spoold::drain
