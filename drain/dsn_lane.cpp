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
        auto batch = spool.envelopes_after(scan_after_, scan_batch_);
        if (!batch) {
            log::warn("event=dsn_scan_failed error={}", log::quote(batch.error().describe()));
        } else {
            for (const auto& env : *batch) {
                if ((env.flags & spool::kFlagDsn) != 0 && !env.held) {
                    note(env);
                }
            }
            if (!batch->empty()) {
                scan_after_ = batch->back().id;
            }
            if (batch->size() < scan_batch_) {
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
