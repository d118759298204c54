#include "drain/scheduler.hpp"

#include <algorithm>

#include "common/address.hpp"
#include "common/log.hpp"
#include "spool/record.hpp"

namespace spoold::drain {
namespace {

constexpr std::size_t kMaxDomains = 4096; // lanes per class

bool in_lane(const std::vector<std::string>& recipients, std::uint32_t flags,
             std::string_view domain) {
    if ((flags & spool::kFlagDsn) != 0) {
        return domain == spool::record::kDsnDomain;
    }
    return std::any_of(recipients.begin(), recipients.end(),
                       [&](const std::string& r) { return spool::record::domain_of(r) == domain; });
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
    for (auto& [domain, lane] : q.lanes) {
        lane.cursor = QueueId{};
        lane.buffer.clear();
        lane.revisit.clear();
        lane.exhausted = false;
    }
    q.restart = false;
    q.idle_until_ms = 0;
}

void Scheduler::refresh() {
    for (auto& q : classes_) {
        restart(q);
        q.domains_read_ms = -1;
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
    const auto it = per_recipient_.find(address::ascii_lower(address));
    return it == per_recipient_.end() ? 0 : it->second;
}

const std::vector<std::string>& Scheduler::leased_recipients(QueueId id) const {
    static const std::vector<std::string> none;
    const auto it = leases_.find(id.value);
    return it == leases_.end() ? none : it->second;
}

Pick Scheduler::take(spool::ClassId klass, Candidate c) {
    for (const auto& r : c.recipients) {
        ++per_recipient_[r];
    }
    const Pick pick{c.id, klass, c.flags};
    leases_.emplace(c.id.value, std::move(c.recipients));
    return pick;
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
    // Part of it may still be ready (recipients of a store that had no room): lanes whose
    // cursor went past it while it was leased find it again this way.
    recheck({id});
}

void Scheduler::recheck(const std::vector<QueueId>& ids) {
    recheck_.insert(recheck_.end(), ids.begin(), ids.end());
    if (recheck_.size() > kMaxRecheck) {
        recheck_.clear();
        for (auto& q : classes_) {
            q.restart = true;
        }
    }
}

void Scheduler::arrived(QueueId id) {
    if (id <= passed_) {
        recheck({id});
    }
}

void Scheduler::add_revisit(spool::ClassId klass, const std::string& domain, QueueId id) {
    ClassQueue& q = classes_[klass];
    Lane& lane = q.lanes[domain];
    if (lane.domain.empty()) {
        lane.domain = domain;
    }
    if (lane.revisit.size() >= kMaxRevisit) {
        q.restart = true;
        return;
    }
    lane.revisit.push_back(id);
}

void Scheduler::park(spool::ClassId klass, const std::string& recipient) {
    // Its walk reads the recipient's messages in id order from the first; one that becomes
    // ready again behind the walk is rechecked, which starts the walk over.
    parked_.try_emplace({klass, recipient});
}

void Scheduler::sort_rechecks(std::size_t& budget) {
    while (!recheck_.empty() && budget > 0) {
        const QueueId id = recheck_.front();
        if (leased(id)) {
            recheck_.pop_front(); // its release rechecks it again
            continue;
        }
        --budget;
        auto got = spool_.get(id);
        if (!got) {
            read_failed_ = true;
            return;
        }
        recheck_.pop_front();
        if (!*got || (*got)->held || spool::message_state(**got) != spool::MsgState::kReady) {
            continue;
        }
        const spool::Envelope& env = **got;
        for (const auto& d : spool::record::recipient_facts_of(env).ready_domains) {
            add_revisit(env.klass, d, id);
        }
        // A walk of one of its recipients that went past it while it was not ready starts
        // over, so a parked recipient's mail is never skipped for good.
        for (const auto& r : env.recipients) {
            const auto it = parked_.find({env.klass, address::ascii_lower(r.address)});
            if (it != parked_.end() && it->second.walked >= id) {
                it->second.walked = QueueId{};
                it->second.head.reset();
            }
        }
    }
}

void Scheduler::check_epoch() {
    auto epoch = spool_.get_meta(spool::kReadyEpochKey);
    if (!epoch) {
        read_failed_ = true;
        return;
    }
    const std::string now = epoch->value_or(std::string());
    if (epoch_ && *epoch_ != now) {
        // hold/release/flush/set-class, perhaps from spoolctl: mail may be ready behind
        // every cursor.
        for (auto& q : classes_) {
            q.restart = true;
        }
    }
    epoch_ = now;
}

bool Scheduler::read_domains(spool::ClassId klass, UnixMillis now) {
    ClassQueue& q = classes_[klass];
    // Read before the domains: a message enqueued after this read changes it.
    auto newest = spool_.newest();
    if (!newest) {
        read_failed_ = true;
        return false;
    }
    q.newest_at_read = *newest;
    auto domains = spool_.ready_domains(klass, kMaxDomains);
    if (!domains) {
        read_failed_ = true;
        return false;
    }
    q.domains_read_ms = now;
    bool added = false;
    for (const auto& d : *domains) {
        if (!q.lanes.contains(d)) {
            q.lanes[d].domain = d;
            added = true;
        }
    }
    // A lane with nothing buffered whose domain has no ready mail left goes.
    for (auto it = q.lanes.begin(); it != q.lanes.end();) {
        const bool listed = std::binary_search(domains->begin(), domains->end(), it->first);
        if (!listed && it->second.buffer.empty() && it->second.revisit.empty()) {
            it = q.lanes.erase(it);
        } else {
            ++it;
        }
    }
    return added;
}

std::optional<Scheduler::Candidate> Scheduler::read(spool::ClassId klass, QueueId id) {
    auto env = spool_.get(id);
    if (!env) {
        read_failed_ = true;
        return std::nullopt;
    }
    if (!*env) {
        return std::nullopt; // removed meanwhile (delivered, deleted by spoolctl)
    }
    const spool::Envelope& e = **env;
    if (e.held || e.klass != klass) {
        return std::nullopt; // the index was read a moment before a hold or set-class
    }
    Candidate c{id, {}, e.flags};
    for (const auto& r : e.recipients) {
        if (r.state == spool::RcptState::kQueued) {
            c.recipients.push_back(address::ascii_lower(r.address));
        }
    }
    if (c.recipients.empty()) {
        return std::nullopt;
    }
    return c;
}

std::optional<std::string> Scheduler::busy_recipient(const Candidate& c) const {
    for (const auto& r : c.recipients) {
        const auto it = per_recipient_.find(r);
        if (it != per_recipient_.end() && it->second >= cap()) {
            return r;
        }
    }
    return std::nullopt;
}

Scheduler::Candidate* Scheduler::lane_head(spool::ClassId klass, Lane& lane, const Admit& admit,
                                           std::size_t& budget) {
    if (!lane.revisit.empty()) {
        // Second looks first: they lie behind the cursor, so before everything buffered.
        std::sort(lane.revisit.begin(), lane.revisit.end());
        lane.revisit.erase(std::unique(lane.revisit.begin(), lane.revisit.end()),
                           lane.revisit.end());
        std::vector<Candidate> back;
        std::vector<QueueId> still;
        for (const QueueId id : lane.revisit) {
            if (leased(id)) {
                continue; // its release brings it back
            }
            auto c = read(klass, id);
            if (read_failed_) {
                return nullptr;
            }
            if (c && in_lane(c->recipients, c->flags, lane.domain)) {
                back.push_back(std::move(*c));
            }
        }
        lane.revisit.clear();
        for (auto it = back.rbegin(); it != back.rend(); ++it) {
            lane.buffer.push_front(std::move(*it));
        }
    }
    for (;;) {
        while (!lane.buffer.empty()) {
            Candidate& c = lane.buffer.front();
            if (leased(c.id)) {
                lane.buffer.pop_front(); // in flight: its release brings it back if need be
                continue;
            }
            if (const auto busy = busy_recipient(c)) {
                park(klass, *busy);
                lane.buffer.pop_front();
                continue;
            }
            if (admit && !admit(c.id, c.recipients, c.flags)) {
                add_revisit(klass, lane.domain, c.id);
                lane.buffer.pop_front();
                continue;
            }
            return &c;
        }
        if (budget == 0) {
            return nullptr;
        }
        auto ids = spool_.ready_in_domain(klass, lane.domain, lane.cursor,
                                          std::max<std::size_t>(1, options_.batch));
        if (!ids) {
            read_failed_ = true;
            return nullptr;
        }
        if (ids->empty()) {
            lane.exhausted = true;
            return nullptr;
        }
        lane.exhausted = false;
        passed_ = std::max(passed_, ids->back());
        for (const QueueId id : *ids) {
            if (leased(id)) {
                lane.cursor = id;
                continue; // its release brings it back if need be
            }
            if (budget > 0) {
                --budget;
            }
            auto c = read(klass, id);
            if (read_failed_) {
                return nullptr; // the cursor stays before this id: it is read again
            }
            lane.cursor = id;
            if (c) {
                lane.buffer.push_back(std::move(*c));
            }
        }
    }
}

std::optional<Scheduler::Candidate> Scheduler::parked_head(spool::ClassId klass,
                                                           const std::string& recipient,
                                                           Parked& parked, const Admit& admit,
                                                           const DomainRoom& room,
                                                           std::size_t& budget, bool& done) {
    for (;;) {
        if (budget == 0) {
            return std::nullopt;
        }
        auto ids = spool_.recipient_after(recipient, parked.walked,
                                          std::max<std::size_t>(1, options_.batch));
        if (!ids) {
            read_failed_ = true;
            return std::nullopt;
        }
        if (ids->empty()) {
            done = true;
            return std::nullopt;
        }
        passed_ = std::max(passed_, ids->back());
        for (const QueueId id : *ids) {
            if (budget > 0) {
                --budget;
            }
            if (leased(id)) {
                parked.walked = id; // in flight to it; its release brings it back if need be
                continue;
            }
            auto c = read(klass, id);
            if (read_failed_) {
                return std::nullopt;
            }
            const bool ours = c && std::find(c->recipients.begin(), c->recipients.end(),
                                             recipient) != c->recipients.end();
            if (!ours) {
                parked.walked = id;
                continue;
            }
            if (const auto busy = busy_recipient(*c)) {
                if (*busy == recipient) {
                    return std::nullopt; // at its cap again: wait here
                }
                park(klass, *busy);
                parked.walked = id;
                continue;
            }
            bool has_room = true;
            if (room && (c->flags & spool::kFlagDsn) != 0) {
                has_room = room(spool::record::kDsnDomain);
            } else if (room) {
                has_room = std::any_of(
                    c->recipients.begin(), c->recipients.end(),
                    [&](const std::string& r) { return room(spool::record::domain_of(r)); });
            }
            if (!has_room) {
                return std::nullopt; // its store is busy or down: wait here, not past it
            }
            if (admit && !admit(c->id, c->recipients, c->flags)) {
                for (const auto& r : c->recipients) {
                    add_revisit(klass, std::string(spool::record::domain_of(r)), c->id);
                }
                parked.walked = id;
                continue;
            }
            return c; // walked stays before it: once leased it is passed over
        }
    }
}

std::optional<Pick> Scheduler::pick_from(spool::ClassId klass, const Admit& admit,
                                         const DomainRoom& room) {
    ClassQueue& q = classes_[klass];
    const UnixMillis now = clock_.now_ms();
    if (q.idle_until_ms > now) {
        return std::nullopt;
    }
    if (q.restart) {
        restart(q);
    }
    if (q.domains_read_ms < 0) {
        read_domains(klass, now);
        if (read_failed_) {
            return std::nullopt;
        }
    }
    std::size_t budget = std::max<std::size_t>(1, options_.scan_budget);
    for (int attempt = 0; attempt < 2; ++attempt) {
        // The oldest eligible message among the lanes with room and the parked recipients
        // with a free slot: FIFO within the class.
        Candidate* best = nullptr;
        Lane* best_lane = nullptr;
        std::pair<spool::ClassId, std::string> best_parked;
        for (auto& [domain, lane] : q.lanes) {
            if (room && !room(domain)) {
                continue; // a store that is down or full costs nothing
            }
            Candidate* c = lane_head(klass, lane, admit, budget);
            if (read_failed_) {
                return std::nullopt;
            }
            if (c != nullptr && (best == nullptr || c->id < best->id)) {
                best = c;
                best_lane = &lane;
            }
        }
        for (auto it = parked_.lower_bound({klass, std::string()});
             it != parked_.end() && it->first.first == klass;) {
            const std::string& recipient = it->first.second;
            const auto slots = per_recipient_.find(recipient);
            Parked& parked = it->second;
            if (slots != per_recipient_.end() && slots->second >= cap()) {
                ++it;
                continue;
            }
            if (parked.head && leased(parked.head->id)) {
                parked.head.reset();
            }
            bool done = false;
            if (!parked.head) {
                parked.head = parked_head(klass, recipient, parked, admit, room, budget, done);
            }
            if (read_failed_) {
                return std::nullopt;
            }
            if (done) {
                it = parked_.erase(it);
                continue;
            }
            if (parked.head && (best == nullptr || parked.head->id < best->id)) {
                best = &*parked.head;
                best_lane = nullptr;
                best_parked = it->first;
            }
            ++it;
        }
        if (best != nullptr) {
            Candidate c = std::move(*best);
            if (best_lane != nullptr) {
                best_lane->buffer.pop_front();
            } else {
                parked_[best_parked].head.reset();
            }
            return take(klass, std::move(c));
        }
        // Nothing now: mail may have come for a domain without a lane yet. Only an enqueue
        // since the last read can add one (promotions and releases come through recheck()
        // and the ready epoch), so an idle class costs one seek per pick, not a read of its
        // domains.
        if (attempt > 0) {
            break;
        }
        auto newest = spool_.newest();
        if (!newest) {
            read_failed_ = true;
            return std::nullopt;
        }
        if (*newest == q.newest_at_read || !read_domains(klass, now)) {
            break;
        }
    }
    if (!configured(klass)) {
        q.idle_until_ms = last_refresh_ms_ + options_.refresh.count();
    }
    return std::nullopt;
}

std::optional<Pick> Scheduler::next(const Admit& admit, const DomainRoom& room) {
    const UnixMillis now = clock_.now_ms();
    read_failed_ = false;
    if (!epoch_) {
        check_epoch(); // where the ready epoch stood when the lanes were first read
    }
    if (now - last_refresh_ms_ >= options_.refresh.count()) {
        last_refresh_ms_ = now;
        check_epoch();
        for (auto& q : classes_) {
            q.domains_read_ms = -1; // read again at the next pick
        }
    }
    // Promoted and released messages join their lanes at once, a bounded number per pick.
    std::size_t recheck_budget = std::max<std::size_t>(1, options_.scan_budget);
    sort_rechecks(recheck_budget);
    const auto report = [&] {
        // A broken read is logged once per refresh interval, not once per class and call.
        if (read_failed_ && now - last_error_log_ms_ >= options_.refresh.count()) {
            last_error_log_ms_ = now;
            log::warn("event=scheduler_read_failed note=\"spool read failed; retrying\"");
        }
    };
    if (read_failed_) {
        report();
        return std::nullopt;
    }
    if (options_.strict_class && *options_.strict_class < classes_.size()) {
        if (auto p = pick_from(*options_.strict_class, admit, room)) {
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
        if (auto p = pick_from(chosen, admit, room)) {
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
