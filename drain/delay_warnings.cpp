#include "drain/delay_warnings.hpp"

#include <algorithm>
#include <chrono>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "common/log.hpp"
#include "common/escaped.hpp"
#include "policy/retention.hpp"

namespace spoold::drain {
namespace {

namespace asio = boost::asio;

} // namespace

bool delay_warning_candidate(const policy::BounceConfig& bounces, const spool::Envelope& env,
                             UnixMillis now) {
    if ((env.flags & (spool::kFlagDsn | spool::kFlagDelayWarned)) != 0 || env.mail_from.empty()) {
        return false;
    }
    if (!policy::delay_warning_due(bounces, env.arrival_ms, now)) {
        return false;
    }
    return std::any_of(env.recipients.begin(), env.recipients.end(),
                       [](const spool::Recipient& r) { return !spool::is_final(r.state); });
}

DelayWarnings::DelayWarnings(asio::any_io_executor executor, spool::Spool& spool,
                             OutcomeWriter& outcomes, DsnLane& lane,
                             const std::shared_ptr<const policy::Config>& config,
                             const bool& stopping, std::function<void()> wake, const Clock& clock)
    : executor_(std::move(executor)), spool_(spool), outcomes_(outcomes), lane_(lane),
      config_(config), stopping_(stopping), wake_(std::move(wake)), clock_(clock) {}

void DelayWarnings::tick(UnixMillis now) {
    const policy::BounceConfig& bounces = config_->bounces;
    if (!bounces.delay_warning || running_ || stopping_ || now < next_ms_) {
        return;
    }
    const std::size_t limit = pacer_.size();
    auto envs = spool_.envelopes_after(cursor_, limit);
    if (!envs) {
        log::warn("event=delay_warning_read_failed error={}", log::quote(envs.error().describe()));
        next_ms_ = now + kDelayWarningIntervalMs;
        return;
    }
    std::vector<spool::Envelope> batch;
    bool young = false;
    for (spool::Envelope& env : *envs) {
        if (!policy::delay_warning_due(bounces, env.arrival_ms, now)) {
            young = true; // and so is every later one
            break;
        }
        cursor_ = env.id;
        if (delay_warning_candidate(bounces, env, now)) {
            batch.push_back(std::move(env));
        }
    }
    if (young || envs->size() < limit) {
        next_ms_ = now + kDelayWarningIntervalMs; // caught up: look again in a while
    }
    if (young) {
        scout(now, batch);
    }
    take_early(now, batch);
    if (batch.empty()) {
        return;
    }
    running_ = true;
    asio::co_spawn(executor_, warn(std::move(batch)), [this](const std::exception_ptr& e) {
        if (e) {
            log::error("event=delay_warning_failed error={}", log::quote(describe_escaped(e)));
        }
        running_ = false;
        wake_();
    });
}

void DelayWarnings::scout(UnixMillis now, std::vector<spool::Envelope>& batch) {
    const policy::BounceConfig& bounces = config_->bounces;
    if (scout_ < cursor_) {
        scout_ = cursor_; // from the walk's stop, the young message it stopped at first
        scout_arrival_ = 0;
    }
    const std::size_t limit = pacer_.size();
    if (early_.size() >= kMaxEarlyWarnings || batch.size() >= limit) {
        return;
    }
    auto envs = spool_.envelopes_after(scout_, limit);
    if (!envs) {
        log::warn("event=delay_warning_read_failed error={}", log::quote(envs.error().describe()));
        return;
    }
    const auto age =
        std::chrono::duration_cast<std::chrono::milliseconds>(*bounces.delay_warning).count();
    std::size_t read = 0;
    for (spool::Envelope& env : *envs) {
        if (early_.size() >= kMaxEarlyWarnings || batch.size() >= limit) {
            break;
        }
        ++read;
        scout_ = env.id;
        if (env.arrival_ms + kDelayWarningSlackMs >= scout_arrival_) {
            scout_arrival_ = std::max(scout_arrival_, env.arrival_ms);
            continue; // in order: the walk comes to it in time
        }
        if (delay_warning_candidate(bounces, env, now)) {
            batch.push_back(std::move(env));
        } else if (!policy::delay_warning_due(bounces, env.arrival_ms, now)) {
            early_.emplace(env.arrival_ms + age, env.id);
        }
    }
    if (read == limit) {
        next_ms_ = now; // more to read: the next turn
    }
}

void DelayWarnings::take_early(UnixMillis now, std::vector<spool::Envelope>& batch) {
    while (!early_.empty() && early_.begin()->first <= now && batch.size() < pacer_.size()) {
        const QueueId id = early_.begin()->second;
        if (id <= cursor_) {
            early_.erase(early_.begin()); // the walk has come to it
            continue;
        }
        auto got = spool_.get(id);
        if (!got) {
            log::warn("event=delay_warning_read_failed error={}",
                      log::quote(got.error().describe()));
            return; // kept: tried again next turn
        }
        early_.erase(early_.begin());
        if (*got && delay_warning_candidate(config_->bounces, **got, now)) {
            batch.push_back(std::move(**got));
        }
    }
}

asio::awaitable<void> DelayWarnings::warn(std::vector<spool::Envelope> batch) {
    std::vector<spool::DelayWarning> items;
    for (const spool::Envelope& env : batch) {
        if (stopping_) {
            co_return;
        }
        if (auto dsn = outcomes_.build_delay_warning(env)) {
            items.push_back(spool::DelayWarning{env.id, std::move(*dsn)});
            if (items.size() % kDelayWarningYieldEvery == 0) {
                co_await asio::post(executor_, asio::use_awaitable);
            }
        }
    }
    if (items.empty() || stopping_) {
        co_return;
    }
    std::vector<std::pair<QueueId, QueueId>> warned; // message, its DSN
    warned.reserve(items.size());
    for (const spool::DelayWarning& w : items) {
        warned.emplace_back(w.id, w.dsn.envelope.id);
    }
    const std::size_t n = items.size();
    const UnixMillis submitted = clock_.now_ms();
    const OutcomeWriter::Batch done = co_await outcomes_.warn_delayed(std::move(items));
    pacer_.took(n, clock_.now_ms() - submitted);
    if (!done.status) {
        // The cursor has passed them: the next start's walk tries them again.
        log::error("event=delay_warning_write_failed messages={} error={}", warned.size(),
                   log::quote(done.status.error().describe()));
        co_return;
    }
    for (std::size_t i = 0; i < done.items.size(); ++i) {
        const auto& [id, dsn] = warned[i];
        if (!done.items[i]) {
            if (done.items[i].error().kind == ErrorKind::kNotFound) {
                continue; // delivered or removed since it was read
            }
            log::error("event=delay_warning_write_failed id={} error={}", id.text(),
                       log::quote(done.items[i].error().describe()));
            continue;
        }
        ++sent_;
        log::info("event=delay_warning id={} dsn={}", id.text(), dsn.text());
        if (lane_.is_open()) {
            lane_.send(dsn);
        }
    }
}

} // namespace spoold::drain
