#include "drain/poison_tracker.hpp"

namespace spoold::drain {

std::uint64_t& PoisonTracker::epoch(std::size_t store) {
    if (store >= epochs_.size()) {
        epochs_.resize(store + 1, 0);
    }
    return epochs_[store];
}

bool PoisonTracker::strike(QueueId id, std::size_t store) {
    if (strikes_.size() >= memory_ && !strikes_.contains(id.value)) {
        strikes_.clear();
    }
    const std::uint64_t now_epoch = epoch(store);
    Strikes& k = strikes_[id.value];
    if (k.store != store) {
        k = Strikes{0, 0, store}; // strikes at one store say nothing about another
    }
    if (k.count == 0 || k.epoch != now_epoch) {
        // The first strike, or the store has worked since the last one: this message
        // keeps meeting trouble that others do not.
        ++k.count;
    }
    k.epoch = now_epoch;
    return k.count >= kPoisonStrikes;
}

void PoisonTracker::delivered(QueueId id, std::size_t store) {
    strikes_.erase(id.value);
    ++epoch(store);
}

bool PoisonTracker::suspect(QueueId id, std::size_t store) const {
    const auto it = strikes_.find(id.value);
    return it != strikes_.end() && it->second.store == store && it->second.count > 0;
}

} // namespace spoold::drain
