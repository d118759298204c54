#include "drain/mailbox_backoff.hpp"

#include <algorithm>

#include "common/address.hpp"
#include "common/log.hpp"
#include "drain/backoff.hpp"

namespace spoold::drain {
namespace {

bool delimits_address(char c) {
    return c == ' ' || c == '<' || c == '>' || c == '(' || c == ')' || c == '[' || c == ']' ||
           c == ',' || c == ';' || c == ':' || c == '"' || c == '\'';
}

bool word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

// The text with each address's local part dropped and each word holding a digit as '#'.
std::string normalise(std::string_view text) {
    std::string lower = address::ascii_lower(text);
    std::string without_local;
    std::size_t start = 0;
    for (std::size_t at = lower.find('@'); at != std::string::npos; at = lower.find('@', at + 1)) {
        std::size_t local = at;
        while (local > start && !delimits_address(lower[local - 1])) {
            --local;
        }
        without_local.append(lower, start, local - start);
        start = at;
    }
    without_local.append(lower, start);

    std::string out;
    for (std::size_t i = 0; i < without_local.size();) {
        if (!word_char(without_local[i])) {
            out += without_local[i++];
            continue;
        }
        std::size_t end = i;
        bool digit = false;
        while (end < without_local.size() && word_char(without_local[end])) {
            digit = digit || (without_local[end] >= '0' && without_local[end] <= '9');
            ++end;
        }
        if (digit) {
            out += '#';
        } else {
            out.append(without_local, i, end - i);
        }
        i = end;
    }
    return out;
}

} // namespace

std::string trouble_key(std::string_view summary) {
    // "451 4.3.0 text": the code and the enhanced status stay as they are.
    std::size_t cut = 0;
    for (int token = 0; token < 2 && cut < summary.size(); ++token) {
        const std::size_t space = summary.find(' ', cut);
        const std::string_view word = summary.substr(
            cut, space == std::string_view::npos ? std::string_view::npos : space - cut);
        const bool status =
            !word.empty() && word.find_first_not_of("0123456789.") == std::string_view::npos;
        if (!status) {
            break;
        }
        cut = space == std::string_view::npos ? summary.size() : space + 1;
    }
    return std::string(summary.substr(0, cut)) + normalise(summary.substr(cut));
}

MailboxBackoff::MailboxBackoff(MailboxBackoffOptions options, const Clock& clock,
                               std::uint64_t seed)
    : options_(options), clock_(clock), rng_(seed) {}

std::string MailboxBackoff::mailbox_key(std::size_t store, const std::string& address) {
    return std::to_string(store) + '\n' + address;
}

std::string MailboxBackoff::group_key(std::size_t store, std::string_view summary) {
    return std::to_string(store) + '\n' + trouble_key(summary);
}

std::chrono::milliseconds MailboxBackoff::step(std::uint32_t failed_probes) const {
    return doubled(options_.min, options_.max, failed_probes);
}

std::chrono::milliseconds MailboxBackoff::jittered(std::uint32_t failed_probes) {
    return equal_jitter(step(failed_probes), rng_);
}

void MailboxBackoff::add_member(Group& g, QueueId id) {
    if (parked_ >= kMaxParkedMessages) {
        return; // it comes back by itself at its parked time
    }
    if (g.members.insert(id.value).second) {
        ++parked_;
    }
}

void MailboxBackoff::forget(std::map<std::string, Group>::iterator it) {
    for (const std::string& m : it->second.mailboxes) {
        mailbox_.erase(mailbox_key(it->second.store, m));
    }
    parked_ -= std::min(parked_, it->second.members.size());
    groups_.erase(it);
}

UnixMillis MailboxBackoff::park(std::size_t store, const std::string& address,
                                std::string_view summary, QueueId id) {
    const UnixMillis now = clock_.now_ms();
    const std::string key = group_key(store, summary);
    auto it = groups_.find(key);
    if (it == groups_.end()) {
        if (groups_.size() >= kMaxTroubleGroups) {
            return now + jittered(0).count();
        }
        Group g;
        g.store = store;
        g.next_probe_ms = now + jittered(0).count();
        it = groups_.emplace(key, std::move(g)).first;
        log::info("event=mailbox_group_started mailstore_index={} reply={} next_probe_in_ms={}",
                  store, log::quote(summary), it->second.next_probe_ms - now);
    }
    Group& g = it->second;
    if (g.probe && *g.probe == id) {
        g.probe.reset();
        ++g.failed_probes;
        g.next_probe_ms = now + jittered(g.failed_probes).count();
        log::info("event=mailbox_group_probe ok=false mailstore_index={} reply={} parked={} "
                  "next_probe_in_ms={}",
                  store, log::quote(summary), g.members.size(), g.next_probe_ms - now);
    }
    const std::string mk = mailbox_key(store, address);
    const auto old = mailbox_.find(mk);
    if (old != mailbox_.end() && old->second != key) {
        const auto was = groups_.find(old->second);
        if (was != groups_.end()) {
            was->second.mailboxes.erase(address);
        }
        mailbox_.erase(old);
    }
    if (mailbox_.size() < kMaxTroubleMailboxes || mailbox_.contains(mk)) {
        mailbox_[mk] = key;
        g.mailboxes.insert(address);
    }
    add_member(g, id);
    return g.next_probe_ms + step(g.failed_probes).count();
}

template <typename Self>
auto* MailboxBackoff::waiting_group(Self& self, std::size_t store, const std::string& address,
                                    QueueId id) {
    decltype(&self.groups_.begin()->second) none = nullptr;
    const auto m = self.mailbox_.find(mailbox_key(store, address));
    if (m == self.mailbox_.end()) {
        return none;
    }
    const auto it = self.groups_.find(m->second);
    if (it == self.groups_.end() || (it->second.probe && *it->second.probe == id)) {
        return none;
    }
    return &it->second;
}

std::optional<UnixMillis> MailboxBackoff::waiting(std::size_t store, const std::string& address,
                                                  QueueId id) {
    Group* g = waiting_group(*this, store, address, id);
    if (g == nullptr) {
        return std::nullopt;
    }
    add_member(*g, id);
    return g->next_probe_ms + step(g->failed_probes).count();
}

bool MailboxBackoff::waits(std::size_t store, const std::string& address, QueueId id) const {
    return waiting_group(*this, store, address, id) != nullptr;
}

bool MailboxBackoff::knows(std::size_t store, std::string_view summary) const {
    return groups_.contains(group_key(store, summary));
}

std::vector<QueueId> MailboxBackoff::answered(std::size_t store, const std::string& address,
                                              QueueId id) {
    const auto m = mailbox_.find(mailbox_key(store, address));
    if (m == mailbox_.end()) {
        return {};
    }
    const auto it = groups_.find(m->second);
    if (it == groups_.end()) {
        mailbox_.erase(m);
        return {};
    }
    std::vector<QueueId> release;
    for (const std::uint64_t member : it->second.members) {
        if (member != id.value) {
            release.push_back(QueueId{member});
        }
    }
    log::info("event=mailbox_group_probe ok=true mailstore_index={} mailboxes={} released={}",
              store, it->second.mailboxes.size(), release.size());
    forget(it);
    return release;
}

std::vector<QueueId> MailboxBackoff::due_probes() {
    const UnixMillis now = clock_.now_ms();
    std::vector<QueueId> probes;
    for (auto it = groups_.begin(); it != groups_.end();) {
        Group& g = it->second;
        if (now < g.next_probe_ms) {
            ++it;
            continue;
        }
        if (g.members.empty()) {
            forget(it++);
            continue;
        }
        g.probe = QueueId{*g.members.begin()};
        g.members.erase(g.members.begin());
        --parked_;
        g.next_probe_ms = now + jittered(g.failed_probes).count();
        probes.push_back(*g.probe);
        ++it;
    }
    return probes;
}

void MailboxBackoff::probe_now(std::size_t store) {
    const UnixMillis now = clock_.now_ms();
    for (auto& [key, g] : groups_) {
        if (g.store == store) {
            g.next_probe_ms = std::min(g.next_probe_ms, now);
        }
    }
}

} // namespace spoold::drain
