#include "drain/outcome.hpp"

#include <algorithm>

#include "drain/backoff.hpp"
#include "drain/trouble.hpp"

namespace spoold::drain {

std::chrono::milliseconds retry_delay(const policy::DrainConfig& config, std::uint32_t attempts) {
    return doubled(config.retry_min, config.retry_max, attempts);
}

// | reply                                   | recipient becomes          | attempt counted |
// | 2xx                                     | delivered                  | yes             |
// | store trouble, session reply            | stays queued               | no              |
// | store trouble, per-recipient 4xx        | stays queued               | no              |
// | its mailbox's trouble (trouble.hpp)     | deferred, mailbox backoff  | no              |
// | 4xx (or no usable reply)                | deferred, backoff by tries | yes             |
// | 5xx                                     | failed (DSN)               | yes             |
// Trouble never fails a recipient: while the store is sick its answers are not verdicts.
// A mailbox's trouble is deferred for retry_min here; the drain's MailboxBackoff sets
// the time it really comes back (with its group's probe).
std::vector<spool::RecipientUpdate> map_result(const spool::Envelope& env,
                                               const std::vector<std::uint32_t>& indexes,
                                               const DeliveryResult& result,
                                               const policy::DrainConfig& config, UnixMillis now) {
    const Verdict verdict = classify(result).verdict;
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
        } else if (verdict == Verdict::kStore && (result.session_reply || !reply->permanent())) {
            u.state = spool::RcptState::kQueued;
            u.count_attempt = false;
            u.response = reply->summary();
        } else if (verdict == Verdict::kMailboxes && is_trouble(*reply)) {
            u.state = spool::RcptState::kDeferred;
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
            const std::uint32_t attempts = !u.count_attempt ? 0
                                           : index < env.recipients.size()
                                               ? env.recipients[index].attempts
                                               : 0;
            u.next_attempt_ms = now + retry_delay(config, attempts).count();
        }
        updates.push_back(std::move(u));
    }
    return updates;
}

} // namespace spoold::drain
