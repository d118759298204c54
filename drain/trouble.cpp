#include "drain/trouble.hpp"

#include <algorithm>

namespace spoold::drain {

bool is_trouble(const Reply& reply) {
    if (reply.code == 421) {
        return true;
    }
    if (!reply.transient()) {
        return false;
    }
    if (reply.enhanced.starts_with("4.3.") || reply.enhanced.starts_with("4.4.")) {
        return true;
    }
    // 451 is "local error in processing" (RFC 5321 4.2.3). Dovecot answers a storage
    // failure with "451 4.2.0 Internal error occurred" per recipient, so the enhanced
    // code alone would hide an outage; 451 4.7.x is policy (greylisting), not trouble.
    return reply.code == 451 && !reply.enhanced.starts_with("4.7.");
}

// | result                                                     | verdict    |
// | session reply with trouble (connect, timeout, 421, MAIL)   | store      |
// | connection lost mid-message (some recipients answered)     | store      |
// | storage failed for everyone (Maildir: full, read-only)     | store      |
// | any per-recipient 421 (the server is closing the session)  | store      |
// | trouble flagged, but no recipient's reply shows it         | store      |
// | per-recipient trouble replies only (RCPT or after DATA)    | mailboxes  |
// | anything else (2xx, 5xx, 452 4.2.2, a 550 to MAIL FROM)    | healthy    |
// A store whose every mailbox answers with trouble of its own is caught by the breaker's
// failure ratio over its window, not here: one delivery cannot tell a dead shard from a dead
// store.
Weighed classify(const DeliveryResult& result) {
    Weighed w;
    if (result.session_reply) {
        if (result.mailstore_trouble) {
            w.verdict = Verdict::kStore;
        }
        return w;
    }
    const bool closing = std::any_of(result.per_recipient.begin(), result.per_recipient.end(),
                                     [](const Reply& r) { return r.code == 421; });
    if (result.connection_lost || result.store_wide || closing) {
        w.verdict = Verdict::kStore;
        return w;
    }
    for (const Reply& r : result.per_recipient) {
        if (is_trouble(r)) {
            ++w.troubled;
        } else {
            ++w.answered;
        }
    }
    if (w.troubled > 0) {
        w.verdict = Verdict::kMailboxes;
        return w;
    }
    if (result.mailstore_trouble) {
        return Weighed{Verdict::kStore, 0, 0};
    }
    return w;
}

} // namespace spoold::drain
