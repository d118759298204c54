#include "drain/stats.hpp"

namespace spoold::drain {

Tally tally(const std::vector<spool::RecipientUpdate>& updates) {
    Tally t;
    for (const auto& u : updates) {
        t.delivered += u.state == spool::RcptState::kDelivered ? 1 : 0;
        t.deferred += u.state == spool::RcptState::kDeferred ? 1 : 0;
        t.failed += u.state == spool::RcptState::kFailed ? 1 : 0;
    }
    return t;
}

void DrainStats::count_outcomes(const std::vector<std::pair<std::size_t, Tally>>& by_store) {
    std::uint64_t delivered = 0;
    for (const auto& [store, t] : by_store) {
        total_.delivered += t.delivered;
        total_.deferred += t.deferred;
        total_.failed += t.failed;
        delivered += t.delivered;
        if (store >= stores_.size()) {
            stores_.resize(store + 1);
        }
        PerStore& s = stores_[store];
        s.tally.delivered += t.delivered;
        s.tally.deferred += t.deferred;
        s.tally.failed += t.failed;
        s.messages_delivered += t.delivered > 0 ? 1 : 0;
    }
    if (delivered > 0) {
        count_delivered_message();
    }
}

void DrainStats::count_delivered_message() {
    ++messages_delivered_;
    const std::int64_t sec = clock_.now_ms() / 1000;
    const auto slot = static_cast<std::size_t>(sec % static_cast<std::int64_t>(kRateSeconds));
    if (rate_second_[slot] != sec) {
        rate_second_[slot] = sec;
        rate_count_[slot] = 0;
    }
    ++rate_count_[slot];
}

double DrainStats::rate_per_s() const {
    const std::int64_t now_s = clock_.now_ms() / 1000;
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < kRateSeconds; ++i) {
        if (rate_second_[i] > now_s - static_cast<std::int64_t>(kRateSeconds) &&
            rate_second_[i] <= now_s) {
            sum += rate_count_[i];
        }
    }
    return static_cast<double>(sum) / static_cast<double>(kRateSeconds);
}

void DrainStats::fill(DrainSnapshot& snap) const {
    snap.delivered = total_.delivered;
    snap.deferred = total_.deferred;
    snap.failed = total_.failed;
    snap.expired = expired_;
    snap.poison = poison_;
    snap.messages_delivered = messages_delivered_;
    snap.rate_per_s = rate_per_s();
    for (std::size_t i = 0; i < snap.mailstores.size() && i < stores_.size(); ++i) {
        MailstoreStatus& m = snap.mailstores[i];
        m.delivered = stores_[i].tally.delivered;
        m.deferred = stores_[i].tally.deferred;
        m.failed = stores_[i].tally.failed;
        m.messages_delivered = stores_[i].messages_delivered;
    }
}

} // namespace spoold::drain
