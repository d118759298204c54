#include "drain/scheduler.hpp"

#include <algorithm>

#include "common/log.hpp"

namespace spoold::drain {
namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
        return static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    });
    return out;
}

} // namespace

Scheduler::Scheduler(spool::Spool& spool, SchedulerOptions options, const Clock& clock)
    : spool_(spool), options_(std::move(options)), clock_(clock), classes_(spool::kMaxClasses),
      current_(spool::kMaxClasses, 0), last_refresh_ms_(clock.now_ms()) {}

void Scheduler::reconfigure(SchedulerOptions options) {
    options_ = std::move(options);
    std::fill(current_.begin(), current_.end(), 0);
    refresh();
}

void Scheduler::restart(ClassQueue& q) {
    q.buffer.clear();
    q.cursor = QueueId{};
    q.skipped = false;
    q.idle_until_ms = 0;
}

void Scheduler::refresh() {
    for (auto& q : classes_) {
        // A class sweeping past a busy recipient finishes its sweep first (it restarts
        // at the end): starting over every second would never get past 100,000 messages
        // for one address to the mail behind them.
        if (!q.skipped) {
            restart(q);
        }
    }
    last_refresh_ms_ = clock_.now_ms();
}

std::uint32_t Scheduler::weight(spool::ClassId klass) const {
    if (!configured(klass)) {
        return 1;
    }
    // Weight 0 is not "never": that would strand mail; it is the smallest share.
    return std::max<std::uint32_t>(1, options_.weights[klass]);
}

std::uint32_t Scheduler::in_flight_to(const std::string& address) const {
    const auto it = per_recipient_.find(lower(address));
    return it == per_recipient_.end() ? 0 : it->second;
}

bool Scheduler::blocked(const Candidate& c, const Admit& admit) const {
    const std::uint32_t cap = std::max<std::uint32_t>(1, options_.max_per_recipient);
    const bool busy =
        std::any_of(c.recipients.begin(), c.recipients.end(), [&](const std::string& r) {
            const auto it = per_recipient_.find(r);
            return it != per_recipient_.end() && it->second >= cap;
        });
    return busy || (admit && !admit(c.id, c.recipients, c.flags));
}

const std::vector<std::string>& Scheduler::leased_recipients(QueueId id) const {
    static const std::vector<std::string> kNone;
    const auto it = leases_.find(id.value);
    return it == leases_.end() ? kNone : it->second;
}

Pick Scheduler::take(spool::ClassId klass, std::deque<Candidate>::iterator it) {
    auto& q = classes_[klass];
    Candidate c = std::move(*it);
    q.buffer.erase(it);
    for (const auto& r : c.recipients) {
        ++per_recipient_[r];
    }
    const QueueId id = c.id;
    leases_.emplace(id.value, std::move(c.recipients));
    return Pick{id, klass, c.flags};
}

void Scheduler::release(QueueId id) {
    const auto it = leases_.find(id.value);
    if (it == leases_.end()) {
        return;
    }
    for (const auto& r : it->second) {
        const auto pr = per_recipient_.find(r);
        if (pr != per_recipient_.end() && --pr->second == 0) {
            per_recipient_.erase(pr);
        }
    }
    leases_.erase(it);
}

bool Scheduler::refill(spool::ClassId klass, std::size_t& budget) {
    auto& q = classes_[klass];
    const std::size_t batch = std::max<std::size_t>(1, options_.batch);
    auto ids = spool_.ready_after(klass, q.cursor, batch);
    if (!ids) {
        read_failed_ = true;
        return false;
    }
    if (ids->empty()) {
        return false;
    }
    for (const QueueId id : *ids) {
        if (leased(id)) {
            q.cursor = id;
            continue; // in flight: its outcome decides whether it comes back
        }
        if (budget > 0) {
            --budget;
        }
        auto env = spool_.get(id);
        if (!env) {
            read_failed_ = true; // the cursor stays before this id: it is read again
            return false;
        }
        q.cursor = id;
        if (!*env) {
            continue; // removed meanwhile (delivered, deleted by spoolctl)
        }
        const spool::Envelope& e = **env;
        if (e.held || e.klass != klass) {
            continue; // the index was read a moment before a hold or set-class
        }
        Candidate c{id, {}, e.flags};
        for (const auto& r : e.recipients) {
            if (r.state == spool::RcptState::kQueued) {
                c.recipients.push_back(lower(r.address));
            }
        }
        if (c.recipients.empty()) {
            continue;
        }
        q.buffer.push_back(std::move(c));
    }
    return true;
}

std::optional<Pick> Scheduler::pick_from(spool::ClassId klass, const Admit& admit) {
    auto& q = classes_[klass];
    if (q.idle_until_ms > clock_.now_ms()) {
        return std::nullopt;
    }
    std::size_t budget = std::max<std::size_t>(1, options_.scan_budget);
    const std::size_t batch = std::max<std::size_t>(1, options_.batch);
    bool restarted = false;
    std::size_t scanned = 0; // buffer entries already known to be blocked
    for (;;) {
        for (auto it = q.buffer.begin() + static_cast<std::ptrdiff_t>(scanned);
             it != q.buffer.end(); ++it, ++scanned) {
            if (!blocked(*it, admit)) {
                return take(klass, it);
            }
        }
        if (budget == 0) {
            return std::nullopt;
        }
        // Everything buffered waits for a busy recipient. Drop the oldest of those so the
        // look-ahead moves on to other recipients; they come back when the cursor restarts.
        while (q.buffer.size() > batch) {
            q.buffer.pop_front();
            --scanned;
            q.skipped = true;
        }
        if (refill(klass, budget)) {
            continue;
        }
        if (read_failed_) {
            return std::nullopt;
        }
        // Nothing after the cursor. New mail appends at the end, so the cursor stays; but
        // what was skipped lies behind it: go round once from the front.
        if (q.skipped && !restarted) {
            restarted = true;
            restart(q);
            scanned = 0;
            continue;
        }
        if (!configured(klass)) {
            q.idle_until_ms = last_refresh_ms_ + options_.refresh.count();
        }
        return std::nullopt;
    }
}

std::optional<Pick> Scheduler::next(const Admit& admit) {
    const UnixMillis now = clock_.now_ms();
    if (now - last_refresh_ms_ >= options_.refresh.count()) {
        refresh();
    }
    read_failed_ = false;
    const auto report = [&] {
        // A broken read is logged once per refresh interval, not once per class and call.
        if (read_failed_ && now - last_error_log_ms_ >= options_.refresh.count()) {
            last_error_log_ms_ = now;
            log::warn("event=scheduler_read_failed note=\"spool read failed; retrying\"");
        }
    };
    if (options_.strict_class && *options_.strict_class < classes_.size()) {
        if (auto p = pick_from(*options_.strict_class, admit)) {
            return p;
        }
    }
    if (read_failed_) {
        report();
        return std::nullopt;
    }
    std::vector<spool::ClassId> candidates;
    for (std::size_t k = 0; k < classes_.size(); ++k) {
        const auto klass = static_cast<spool::ClassId>(k);
        if (options_.strict_class && *options_.strict_class == klass) {
            continue;
        }
        if (classes_[k].idle_until_ms > now) {
            continue;
        }
        candidates.push_back(klass);
    }
    // Smooth weighted round robin (as nginx balances upstreams) over the classes that
    // have work: each round every candidate earns its weight, the richest is served and
    // pays the total. A class found empty gets its round undone, so idle classes do not
    // hoard credit and burst later.
    while (!candidates.empty() && !read_failed_) {
        std::int64_t total = 0;
        std::size_t best = 0;
        for (std::size_t i = 0; i < candidates.size(); ++i) {
            const auto k = candidates[i];
            current_[k] += weight(k);
            total += weight(k);
            if (current_[k] > current_[candidates[best]]) {
                best = i;
            }
        }
        const auto chosen = candidates[best];
        current_[chosen] -= total;
        if (auto p = pick_from(chosen, admit)) {
            return p;
        }
        for (const auto k : candidates) {
            current_[k] -= weight(k);
        }
        current_[chosen] += total;
        candidates.erase(candidates.begin() + static_cast<std::ptrdiff_t>(best));
    }
    report();
    return std::nullopt;
}

} // namespace spoold::drain
