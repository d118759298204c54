// Sizes the drain's bulk write transactions (promotion, expiry, delay warnings) by how long
// the last one took: the intake's commits share the spool's one writer, so new mail waits behind
// at most about kBulkCommitTargetMs of bulk work, whatever the backlog. It counts; writes nothing.
#pragma once

#include <cstddef>
#include <cstdint>

namespace spoold::drain {

// How long one bulk transaction may hold the writer (submit to commit, by the drain's clock).
inline constexpr std::int64_t kBulkCommitTargetMs = 100;
// The first batch of a job: a big spool's first commit is its slowest (pages not in cache).
inline constexpr std::size_t kBulkFirstBatch = 256;
inline constexpr std::size_t kBulkMinBatch = 16;

class BulkPacer {
public:
    // Batches of at most `max` (a spool limit such as spool::kMaxPromotePerOp).
    explicit BulkPacer(std::size_t max);

    // How many to put into the next transaction.
    std::size_t size() const { return size_; }
    // A batch of `n` took `took_ms` from submit to commit: the next one is sized so it would
    // have taken kBulkCommitTargetMs at that pace, growing at most twofold per batch (a short
    // batch that was quick, because fewer were due, changes nothing).
    void took(std::size_t n, std::int64_t took_ms);

private:
    std::size_t max_;
    std::size_t size_;
};

} // namespace spoold::drain
