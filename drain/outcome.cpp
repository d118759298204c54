#include "drain/outcome.hpp"

#include <algorithm>

namespace spoold::drain {

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

} // namespace spoold::drain
