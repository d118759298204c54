#include "drain/health.hpp"

#include "common/log.hpp"
#include "drain/trouble.hpp"

namespace spoold::drain {

bool weigh_result(Store& store, std::size_t index, PoisonTracker& poison, QueueId id,
                  UnixMillis started, DeliveryResult& result, std::uint32_t grouped) {
    const BreakerState before = store.breaker().state();
    const Weighed weighed = classify(result);
    bool is_poison = false;
    if (weighed.verdict == Verdict::kStore) {
        // Only trouble met while the store is closed (working for others) is evidence
        // against the message; in half-open it is the store on trial.
        is_poison = before == BreakerState::kClosed && poison.strike(id, index);
        if (!is_poison) {
            store.breaker().on_trouble();
            store.pacing().on_trouble(started);
        }
    } else {
        // The session worked. Recipients whose mailboxes are in trouble (a dead shard)
        // weigh only through the breaker's failure ratio, and not at all once their group is
        // known; a delivery that got nothing but such replies says nothing of the store's
        // speed (it never reached DATA's work).
        if (weighed.verdict == Verdict::kHealthy || weighed.answered > 0) {
            poison.delivered(id, index);
            store.breaker().on_success();
            store.pacing().on_success(started);
        }
        store.breaker().on_recipients(weighed.answered, weighed.troubled, grouped);
    }
    if (before != BreakerState::kClosed && store.breaker().state() == BreakerState::kClosed) {
        store.pacing().restart(); // recovered: slow start
    }
    if (!is_poison) {
        return false;
    }
    // Its trouble is its own: an ordinary temporary failure, with backoff, so the rest of
    // the queue flows and the message still gets its retries (and its retention) like any
    // other deferred one.
    log::warn("event=poison_message id={} mailstore={} reply={} note=\"deferred: it met mailstore "
              "trouble {} times while the store worked for others\"",
              id.text(), log::quote(store.name()),
              log::quote(result.session_reply ? result.session_reply->summary() : std::string()),
              kPoisonStrikes);
    result.mailstore_trouble = false;
    if (result.session_reply && !result.session_reply->transient()) {
        result.session_reply = make_reply(451, "4.3.0", "mailstore trouble with this message");
    }
    return true;
}

} // namespace spoold::drain
