// The DSN lane: ids of our DSNs to send through the smarthost now, even while mailstore
// breakers are open (spooled here, found at start-up through the spool's DSN index, or
// retries come due). It keeps ids only: the drain leases and delivers them.
#pragma once

#include <cstddef>
#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "common/clock.hpp"
#include "common/queue_id.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

inline constexpr std::size_t kDsnScanBatch = 2048; // DSNs read per tick at start-up

class DsnLane {
public:
    explicit DsnLane(std::size_t scan_batch = kDsnScanBatch) : scan_batch_(scan_batch) {}

    // The lane runs once a smarthost is set; until then every call below does nothing.
    void open() { open_ = true; }
    bool is_open() const { return open_; }

    // Send `id` as soon as the smarthost has room.
    void send(QueueId id);
    // Send `id` once `due` has come.
    void retry_at(UnixMillis due, QueueId id);
    // A DSN from the lane had no queued recipient (its deferral is not promoted yet):
    // looked at again at its first deferred recipient's retry, not before `earliest`.
    void not_ready(const spool::Envelope& env, UnixMillis earliest);
    // After a delivery through the smarthost: the smarthost was down (`trouble`), so the
    // DSN goes again as soon as it has room; or it deferred some recipient, so the DSN
    // goes again at `retry_due` (retry_due() below) through the lane, not behind a breaker.
    void after_attempt(QueueId id, bool trouble, std::optional<UnixMillis> retry_due);
    // The latest retry among the deferred ones of `updates`, not before `now`.
    static std::optional<UnixMillis> retry_due(const std::vector<spool::RecipientUpdate>& updates,
                                               UnixMillis now);

    // One batch of the DSNs in the spool at start-up (the DSN index, in id order); then the
    // retries due at `now` join the queue.
    void feed(spool::Spool& spool, UnixMillis now);
    // The next DSN to send, if any.
    std::optional<QueueId> next();

    std::size_t queued() const { return queue_.size(); }
    std::size_t waiting() const { return deferred_.size(); }
    bool scan_done() const { return scan_done_; }

private:
    void note(const spool::Envelope& env);

    std::size_t scan_batch_;
    bool open_ = false;
    std::deque<QueueId> queue_;
    std::multimap<UnixMillis, QueueId> deferred_; // by the time of the next attempt
    QueueId scan_after_{};                        // the scan walks the spool in id order
    bool scan_done_ = false;
};

} // namespace spoold::drain
