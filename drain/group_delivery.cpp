#include "drain/group_delivery.hpp"

#include <algorithm>
#include <boost/asio/this_coro.hpp>
#include <exception>

#include "common/address.hpp"
#include "common/log.hpp"
#include "drain/health.hpp"
#include "drain/outcome.hpp"
#include "drain/trouble.hpp"

namespace spoold::drain {

namespace asio = boost::asio;

GroupDelivery::GroupDelivery(spool::Spool& spool, std::vector<Store>& stores, PoisonTracker& poison,
                             MailboxBackoff& backoff, const std::size_t& mailstores,
                             DrainStats& stats, const std::shared_ptr<const policy::Config>& config,
                             const bool& stopping, const Clock& clock)
    : spool_(spool), stores_(stores), poison_(poison), backoff_(backoff), mailstores_(mailstores),
      stats_(stats), config_(config), stopping_(stopping), clock_(clock) {}

void GroupDelivery::park_waiting(const spool::Envelope& env, Group& group, GroupsDelivered& out) {
    if (group.store >= mailstores_) {
        return;
    }
    std::erase_if(group.indexes, [&](std::uint32_t i) {
        const spool::Recipient& r = env.recipients[i];
        const auto until = backoff_.waiting(group.store, address::ascii_lower(r.address), env.id);
        if (!until) {
            return false;
        }
        spool::RecipientUpdate u;
        u.index = i;
        u.state = spool::RcptState::kDeferred;
        u.next_attempt_ms = *until;
        u.response = r.last_response;
        u.count_attempt = false;
        out.updates.push_back(std::move(u));
        out.handoffs.push_back(Handoff::kFinal); // in step; a deferral reports nothing
        return true;
    });
}

void GroupDelivery::learn(const spool::Envelope& env, std::size_t store,
                          std::vector<spool::RecipientUpdate>& mapped, GroupsDelivered& out) {
    if (store >= mailstores_) {
        return;
    }
    for (spool::RecipientUpdate& u : mapped) {
        const std::string address = address::ascii_lower(env.recipients[u.index].address);
        if (u.state == spool::RcptState::kDeferred && !u.count_attempt) {
            u.next_attempt_ms = backoff_.park(store, address, u.response, env.id);
        } else if (u.state != spool::RcptState::kQueued) {
            auto release = backoff_.answered(store, address, env.id);
            std::move(release.begin(), release.end(), std::back_inserter(out.release));
        }
    }
}

DeliveryRequest GroupDelivery::request_for(const spool::Envelope& env, const Group& group) const {
    DeliveryRequest request;
    request.id = env.id;
    request.mail_from = env.mail_from;
    request.size = env.size;
    request.smtputf8 = (env.flags & spool::kFlagSmtpUtf8) != 0;
    request.eight_bit_mime = (env.flags & spool::kFlag8BitMime) != 0;
    request.envid = env.envid;
    request.ret = env.ret;
    for (const std::uint32_t i : group.indexes) {
        const spool::Recipient& r = env.recipients[i];
        request.recipients.push_back(r.address);
        request.recipient_dsn.push_back(RecipientDsn{r.notify, r.orcpt});
    }
    spool::Spool* spool = &spool_;
    request.read_body = [spool, id = env.id](std::uint32_t from_chunk, std::size_t max_bytes) {
        return spool->read_body(id, from_chunk, max_bytes);
    };
    return request;
}

std::uint32_t GroupDelivery::grouped_trouble(const DeliveryResult& result,
                                             std::size_t store) const {
    if (store >= mailstores_ || result.session_reply) {
        return 0;
    }
    return static_cast<std::uint32_t>(std::count_if(
        result.per_recipient.begin(), result.per_recipient.end(),
        [&](const Reply& r) { return is_trouble(r) && backoff_.knows(store, r.summary()); }));
}

asio::awaitable<DeliveryResult> GroupDelivery::deliver_group(DeliveryRequest request,
                                                             std::size_t store) {
    const QueueId id = request.id;
    const UnixMillis started = clock_.now_ms();
    DeliveryResult result;
    try {
        result = co_await stores_[store].mailstore().deliver(std::move(request));
    } catch (const std::exception& e) {
        // Connectors report peer trouble in the result; an exception is a bug or a
        // cancellation (stop). Either way nothing is known: keep the recipients queued.
        log::error("event=delivery_exception id={} error={}", id.text(), log::quote(e.what()));
        result = DeliveryResult{.session_reply = make_reply(451, "4.3.0", "delivery aborted"),
                                .mailstore_trouble = true};
    }
    co_await asio::this_coro::reset_cancellation_state();
    if (!stopping_ && weigh_result(stores_[store], store, poison_, id, started, result,
                                   grouped_trouble(result, store))) {
        stats_.count_poison();
    }
    co_return result;
}

GroupsDelivered GroupDelivery::park(const spool::Envelope& env, std::vector<Group> groups) {
    GroupsDelivered out;
    for (Group& group : groups) {
        park_waiting(env, group, out);
    }
    return out;
}

asio::awaitable<GroupsDelivered> GroupDelivery::deliver(spool::Envelope env,
                                                        std::vector<Group> groups) {
    GroupsDelivered out;
    for (Group& group : groups) {
        park_waiting(env, group, out);
        if (group.indexes.empty()) {
            continue; // all of it waits behind a probe: nothing goes to the store
        }
        const UnixMillis started = clock_.now_ms();
        const DeliveryResult result = co_await deliver_group(request_for(env, group), group.store);
        auto mapped = map_result(env, group.indexes, result, config_->drain, clock_.now_ms());
        learn(env, group.store, mapped, out);
        const GroupResult done{group.store, tally(mapped), result.mailstore_trouble};
        if (log::level() <= log::Level::kDebug) { // its arguments cost three strings
            log::debug(
                "event=delivery id={} mailstore={} delivered={} deferred={} failed={} trouble={} "
                "ms={} reply={}",
                env.id.text(), log::quote(stores_[group.store].name()), done.tally.delivered,
                done.tally.deferred, done.tally.failed, done.trouble, clock_.now_ms() - started,
                log::quote(mapped.empty() ? std::string() : mapped.front().response));
        }
        out.groups.push_back(done);
        out.handoffs.insert(out.handoffs.end(), mapped.size(), result.handoff);
        std::move(mapped.begin(), mapped.end(), std::back_inserter(out.updates));
        if (stopping_) {
            break; // the remaining groups stay queued
        }
    }
    co_return out;
}

} // namespace spoold::drain
