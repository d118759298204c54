#include "spool/spool.hpp"

#include <algorithm>
#include <future>
#include <memory>

namespace spoold::spool {

bool is_final(RcptState s) {
    return s == RcptState::kDelivered || s == RcptState::kFailed || s == RcptState::kExpired;
}

std::string_view to_string(RcptState s) {
    switch (s) {
    case RcptState::kQueued: return "queued";
    case RcptState::kDeferred: return "deferred";
    case RcptState::kDelivered: return "delivered";
    case RcptState::kFailed: return "failed";
    case RcptState::kExpired: return "expired";
    }
    return "unknown";
}

std::string_view to_string(MsgState s) {
    switch (s) {
    case MsgState::kReady: return "ready";
    case MsgState::kDeferred: return "deferred";
    case MsgState::kHeld: return "held";
    }
    return "unknown";
}

MsgState message_state(const Envelope& env) {
    if (env.held) {
        return MsgState::kHeld;
    }
    const bool any_queued =
        std::any_of(env.recipients.begin(), env.recipients.end(),
                    [](const Recipient& r) { return r.state == RcptState::kQueued; });
    if (any_queued) {
        return MsgState::kReady;
    }
    const bool any_deferred =
        std::any_of(env.recipients.begin(), env.recipients.end(),
                    [](const Recipient& r) { return r.state == RcptState::kDeferred; });
    return any_deferred ? MsgState::kDeferred : MsgState::kReady;
}

UnixMillis next_due(const Envelope& env) {
    UnixMillis due = 0;
    for (const Recipient& r : env.recipients) {
        if (r.state == RcptState::kDeferred && (due == 0 || r.next_attempt_ms < due)) {
            due = r.next_attempt_ms;
        }
    }
    return due;
}

std::uint64_t Counters::total_messages() const {
    std::uint64_t n = 0;
    for (const auto& per_class : messages) {
        for (const auto v : per_class) {
            n += v;
        }
    }
    return n;
}

std::uint64_t Counters::total_bytes() const {
    std::uint64_t n = 0;
    for (const auto& per_class : bytes) {
        for (const auto v : per_class) {
            n += v;
        }
    }
    return n;
}

Status Spool::wait(const std::function<void(Done)>& submit) {
    auto promise = std::make_shared<std::promise<Status>>();
    auto future = promise->get_future();
    submit([promise](Status st) { promise->set_value(std::move(st)); });
    return future.get();
}

} // namespace spoold::spool
