#include "drain/delay_warnings.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>

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
                             const bool& stopping, std::function<void()> wake)
    : executor_(std::move(executor)), spool_(spool), outcomes_(outcomes), lane_(lane),
      config_(config), stopping_(stopping), wake_(std::move(wake)) {}

void DelayWarnings::tick(UnixMillis now) {
    const policy::BounceConfig& bounces = config_->bounces;
    if (!bounces.delay_warning || running_ || stopping_ || now < next_ms_) {
        return;
    }
    auto envs = spool_.envelopes_after(cursor_, kDelayWarningBatch);
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
    if (young || envs->size() < kDelayWarningBatch) {
        next_ms_ = now + kDelayWarningIntervalMs; // caught up: look again in a while
    }
    if (batch.empty()) {
        return;
    }
    running_ = true;
    asio::co_spawn(executor_, warn(std::move(batch)), [this](std::exception_ptr e) {
        if (e) {
            log::error("event=delay_warning_failed error={}", log::quote(describe_escaped(e)));
        }
        running_ = false;
        wake_();
    });
}

asio::awaitable<void> DelayWarnings::warn(std::vector<spool::Envelope> batch) {
    for (spool::Envelope& env : batch) {
        if (stopping_) {
            co_return;
        }
        const QueueId id = env.id;
        const OutcomeWriter::Committed committed = co_await outcomes_.warn_delayed(std::move(env));
        if (!committed.status) {
            if (committed.status.error().kind == ErrorKind::kNotFound) {
                continue; // delivered or removed since it was read
            }
            // The cursor has passed it: the next start's walk tries it again.
            log::error("event=delay_warning_write_failed id={} error={}", id.text(),
                       log::quote(committed.status.error().describe()));
            continue;
        }
        if (committed.dsn) {
            ++sent_;
            log::info("event=delay_warning id={} dsn={}", id.text(), committed.dsn->text());
            if (lane_.is_open()) {
                lane_.send(*committed.dsn);
            }
        }
    }
}

} // namespace spoold::drain
