#include "drain/dsn_lane.hpp"

#include <algorithm>

#include "common/log.hpp"

namespace spoold::drain {

void DsnLane::send(QueueId id) {
    if (open_) {
        queue_.push_back(id);
    }
}

void DsnLane::retry_at(UnixMillis due, QueueId id) {
    if (open_) {
        deferred_.emplace(due, id);
    }
}

void DsnLane::not_ready(const spool::Envelope& env, UnixMillis earliest) {
    for (const auto& r : env.recipients) {
        if (r.state == spool::RcptState::kDeferred) {
            retry_at(std::max(r.next_attempt_ms, earliest), env.id);
            return;
        }
    }
}

void DsnLane::after_attempt(QueueId id, bool trouble, std::optional<UnixMillis> retry_due) {
    if (trouble) {
        send(id);
    } else if (retry_due) {
        retry_at(*retry_due, id);
    }
}

std::optional<UnixMillis> DsnLane::retry_due(const std::vector<spool::RecipientUpdate>& updates,
                                             UnixMillis now) {
    std::optional<UnixMillis> due;
    for (const auto& u : updates) {
        if (u.state == spool::RcptState::kDeferred) {
            due = std::max(due.value_or(now), u.next_attempt_ms);
        }
    }
    return due;
}

void DsnLane::note(const spool::Envelope& env) {
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
        queue_.push_back(env.id);
    } else if (due) {
        deferred_.emplace(*due, env.id);
    }
}

void DsnLane::feed(spool::Spool& spool, UnixMillis now) {
    if (!open_) {
        return;
    }
    if (!scan_done_) {
        // The DSN index holds exactly our DSNs: a restart costs what they cost, not what
        // the spool holds.
        auto ids = spool.dsns_after(scan_after_, scan_batch_);
        if (!ids) {
            log::warn("event=dsn_scan_failed error={}", log::quote(ids.error().describe()));
        } else {
            for (const QueueId id : *ids) {
                auto env = spool.get(id);
                if (!env) {
                    log::warn("event=dsn_scan_failed id={} error={}", id.text(),
                              log::quote(env.error().describe()));
                    break; // read again from here at the next tick
                }
                scan_after_ = id;
                if (*env && !(*env)->held) {
                    note(**env);
                }
            }
            if (ids->size() < scan_batch_ && (ids->empty() || scan_after_ == ids->back())) {
                scan_done_ = true;
                log::info("event=dsn_scan_done queued={} deferred={}", queue_.size(),
                          deferred_.size());
            }
        }
    }
    // A DSN's retry moves it back to ready through promote_due; one whose promotion has
    // not happened yet when it is tried comes back through not_ready().
    while (!deferred_.empty() && deferred_.begin()->first <= now) {
        queue_.push_back(deferred_.begin()->second);
        deferred_.erase(deferred_.begin());
    }
}

std::optional<QueueId> DsnLane::next() {
    if (queue_.empty()) {
        return std::nullopt;
    }
    const QueueId id = queue_.front();
    queue_.pop_front();
    return id;
}

} // namespace spoold::drain
