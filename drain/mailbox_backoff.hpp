// Mailboxes a store refuses for now while it works for others (a dead shard, a broken
// backend): their mail waits in groups that learn which recipients fail together, and each
// group is retried behind one probe message with backoff and jitter, not one by one. Memory
// only; it writes and delivers nothing (the drain parks, flushes and probes on its word).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.hpp"
#include "common/queue_id.hpp"

namespace spoold::drain {

// Bounds on what is remembered; past them a trouble recipient is simply deferred for a
// jittered first step (it comes back by itself, nothing is lost, it only costs more tries).
inline constexpr std::size_t kMaxTroubleGroups = 1024;
inline constexpr std::size_t kMaxTroubleMailboxes = 100'000;
inline constexpr std::size_t kMaxParkedMessages = 100'000;

struct MailboxBackoffOptions {
    std::chrono::milliseconds min{std::chrono::minutes(1)}; // drain.retry_min
    std::chrono::milliseconds max{std::chrono::hours(1)};   // drain.retry_max
};

// What groups recipients: the reply's code and enhanced status as they are, its text lower-
// cased with every address reduced to "@domain" and every run of digits (and any word with
// a digit in it: queue ids, session ids) to "#". "451 4.3.0 <u17@ex.com> shard 3 down, id
// 5F2A9" and "451 4.3.0 <bob@ex.com> shard 4 down, id 77B01" share "451 4.3.0 <@ex.com>
// shard # down, id #": by text, and within a domain.
std::string trouble_key(std::string_view summary);

class MailboxBackoff {
public:
    MailboxBackoff(MailboxBackoffOptions options, const Clock& clock,
                   std::uint64_t seed = std::random_device{}());
    void reconfigure(const MailboxBackoffOptions& options) { options_ = options; }

    // Recipient `address` (lower-cased) of message `id` got the trouble reply `summary` from
    // store `store`: it joins its group (started here when new; a failed probe backs the
    // group off one step). Returns when its mail comes back by itself if no probe releases
    // it first: a step after the group's next probe.
    UnixMillis park(std::size_t store, const std::string& address, std::string_view summary,
                    QueueId id);
    // Whether mail to `address` at `store` waits behind a group now; then message `id` is
    // parked with it (as park() says), unless it is the group's probe.
    std::optional<UnixMillis> waiting(std::size_t store, const std::string& address, QueueId id);
    // Whether waiting() would park message `id`'s mail to `address` at `store` now; changes
    // nothing (the drain asks before it spends a delivery slot on the message).
    bool waits(std::size_t store, const std::string& address, QueueId id) const;
    // Whether trouble reading `summary` at `store` is a known group's (its mail parked behind
    // its probe); changes nothing (the drain asks before it weighs a delivery's result).
    bool knows(std::size_t store, std::string_view summary) const;
    // `address` at `store` got an answer without trouble for message `id`: its group's
    // mailboxes work again. Returns the other messages parked in that group (to flush now);
    // the group is forgotten.
    std::vector<QueueId> answered(std::size_t store, const std::string& address, QueueId id);
    // Groups whose probe is due: one parked message each, to flush now. A group's next probe
    // is set a step out meanwhile, in case this one never reports back. Groups with nothing
    // parked are forgotten.
    std::vector<QueueId> due_probes();
    // Store `store` recovered from an outage (its breaker closed): its groups probe at once.
    void probe_now(std::size_t store);

    std::size_t groups() const { return groups_.size(); }
    std::size_t parked() const { return parked_; }

private:
    struct Group {
        std::size_t store = 0;
        std::uint32_t failed_probes = 0;
        UnixMillis next_probe_ms = 0;
        std::optional<QueueId> probe;
        std::set<std::uint64_t> members; // parked messages by id: the oldest first
        std::unordered_set<std::string> mailboxes;
    };
    std::chrono::milliseconds step(std::uint32_t failed_probes) const;
    std::chrono::milliseconds jittered(std::uint32_t failed_probes);
    void add_member(Group& g, QueueId id);
    void forget(std::map<std::string, Group>::iterator it);
    static std::string mailbox_key(std::size_t store, const std::string& address);
    static std::string group_key(std::size_t store, std::string_view summary);
    // The group mail to `address` at `store` waits behind for message `id`: null when the
    // mailbox is in no group or `id` is its group's probe. For waiting() and waits() alike.
    template <typename Self>
    static auto* waiting_group(Self& self, std::size_t store, const std::string& address,
                               QueueId id);

    MailboxBackoffOptions options_;
    const Clock& clock_;
    std::mt19937_64 rng_;
    std::map<std::string, Group> groups_;                  // by store and trouble key
    std::unordered_map<std::string, std::string> mailbox_; // store and address -> group key
    std::size_t parked_ = 0;                               // members of all groups
};

} // namespace spoold::drain
