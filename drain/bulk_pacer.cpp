#include "drain/bulk_pacer.hpp"

#include <algorithm>

namespace spoold::drain {

BulkPacer::BulkPacer(std::size_t max)
    : max_(std::max(max, kBulkMinBatch)), size_(std::min(max_, kBulkFirstBatch)) {}

void BulkPacer::took(std::size_t n, std::int64_t took_ms) {
    if (n == 0) {
        return;
    }
    // A clock step backwards counts as instant; 1 ms is the clock's grain.
    if (n < size_ && took_ms <= kBulkCommitTargetMs) {
        return; // fewer were due: says nothing about a full batch
    }
    const auto ms = static_cast<std::size_t>(std::max<std::int64_t>(took_ms, 1));
    const std::size_t at_pace = n * static_cast<std::size_t>(kBulkCommitTargetMs) / ms;
    size_ = std::clamp(std::min(at_pace, 2 * n), kBulkMinBatch, max_);
}

} // namespace spoold::drain
