// The drain's counts since start: recipients by outcome, in total and per store, expired
// recipients, poison deferrals, and messages delivered with their rate over the last ten
// seconds. Counting only; nothing here decides.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/clock.hpp"
#include "drain/status.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

// Recipient outcomes of one message at one store (or in total).
struct Tally {
    std::uint64_t delivered = 0;
    std::uint64_t deferred = 0;
    std::uint64_t failed = 0;
};
Tally tally(const std::vector<spool::RecipientUpdate>& updates);

class DrainStats {
public:
    static constexpr std::size_t kRateSeconds = 10;

    explicit DrainStats(const Clock& clock) : clock_(clock) {}

    // The committed outcomes of one message, per store it went to.
    void count_outcomes(const std::vector<std::pair<std::size_t, Tally>>& by_store);
    void count_expired(std::uint64_t recipients) { expired_ += recipients; }
    void count_poison() { ++poison_; }

    // Fills the counts of `snap`, and of `snap.mailstores` by store index.
    void fill(DrainSnapshot& snap) const;
    const Tally& total() const { return total_; }
    std::uint64_t expired() const { return expired_; }

private:
    struct PerStore {
        Tally tally;
        std::uint64_t messages_delivered = 0;
    };
    void count_delivered_message();
    double rate_per_s() const;

    const Clock& clock_;
    Tally total_;
    std::uint64_t expired_ = 0;
    std::uint64_t poison_ = 0; // deliveries deferred as poison
    std::uint64_t messages_delivered_ = 0;
    std::vector<PerStore> stores_;
    std::array<std::uint64_t, kRateSeconds> rate_count_{};
    std::array<std::int64_t, kRateSeconds> rate_second_{};
};

} // namespace spoold::drain
