// Delivers one message's recipient groups, one transaction per store in turn, weighs each
// result for the store's health and maps the replies to recipient updates, tallied per
// store; recipients whose mailboxes wait behind a trouble group are parked without a
// delivery. It takes no slots and writes nothing to the spool (OutcomeWriter commits).
#pragma once

#include <boost/asio/awaitable.hpp>
#include <memory>
#include <vector>

#include "common/clock.hpp"
#include "drain/mailbox_backoff.hpp"
#include "drain/mailstore.hpp"
#include "drain/poison_tracker.hpp"
#include "drain/recipient_groups.hpp"
#include "drain/stats.hpp"
#include "drain/store.hpp"
#include "policy/config.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

// What one group's store answered.
struct GroupResult {
    std::size_t store = 0;
    Tally tally;
    bool trouble = false; // the store was in trouble (the recipients stay queued)
};

struct GroupsDelivered {
    std::vector<spool::RecipientUpdate> updates; // of every group delivered (or parked), in order
    std::vector<Handoff> handoffs;               // how each of `updates` left, in step
    std::vector<GroupResult> groups;
    std::vector<QueueId> release; // parked messages whose mailboxes answered again: flush
};

class GroupDelivery {
public:
    // `config` and `stopping` are the drain's own and are read as each group ends: a
    // reload or stop() may come meanwhile.
    // Mailbox backoff applies to stores [0, mailstores) (not the DSN relay).
    GroupDelivery(spool::Spool& spool, std::vector<Store>& stores, PoisonTracker& poison,
                  MailboxBackoff& backoff, const std::size_t& mailstores, DrainStats& stats,
                  const std::shared_ptr<const policy::Config>& config, const bool& stopping,
                  const Clock& clock);

    // Delivers `groups` of `env` one after the other; after stop() the remaining groups
    // are left out (their recipients stay queued).
    boost::asio::awaitable<GroupsDelivered> deliver(spool::Envelope env, std::vector<Group> groups);
    // Only parks: the recipients of `groups` whose mailboxes wait behind a trouble group
    // become parked updates, as deliver() would make them; nothing goes to a store.
    GroupsDelivered park(const spool::Envelope& env, std::vector<Group> groups);

private:
    // Delivers one group and weighs the result (unless stopping: a delivery cut short by
    // stop() says nothing about the store's health).
    boost::asio::awaitable<DeliveryResult> deliver_group(DeliveryRequest request,
                                                         std::size_t store);
    DeliveryRequest request_for(const spool::Envelope& env, const Group& group) const;
    // How many of `result`'s per-recipient trouble replies from `store` a known trouble group
    // handles already (weigh_result does not count them against the store).
    std::uint32_t grouped_trouble(const DeliveryResult& result, std::size_t store) const;
    // Takes out of `group` the recipients whose mailboxes wait behind a trouble group, as
    // parked updates into `out`.
    void park_waiting(const spool::Envelope& env, Group& group, GroupsDelivered& out);
    // Mailbox trouble parks its recipients with their group; an answer releases a group.
    void learn(const spool::Envelope& env, std::size_t store,
               std::vector<spool::RecipientUpdate>& mapped, GroupsDelivered& out);

    spool::Spool& spool_;
    std::vector<Store>& stores_;
    PoisonTracker& poison_;
    MailboxBackoff& backoff_;
    const std::size_t& mailstores_;
    DrainStats& stats_;
    const std::shared_ptr<const policy::Config>& config_;
    const bool& stopping_;
    const Clock& clock_;
};

} // namespace spoold::drain
