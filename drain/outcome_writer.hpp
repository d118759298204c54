// Commits a message's recipient updates in one spool transaction (the DSN for the failed
// or expired built into it), retention for a batch, and expiries the drain computed again.
// It decides no outcome (outcome.hpp does) and delivers nothing.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "common/clock.hpp"
#include "common/queue_id.hpp"
#include "common/result.hpp"
#include "drain/mailstore.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

// Builds the DSN for recipients that just became final without delivery (kFailed, or
// kExpired under retention action "bounce"), delivered ones that asked for NOTIFY=SUCCESS
// (kDelivered: "delivered", or "relayed" when their handoff says so), or the delay warning
// for recipients still waiting (a state not final: kQueued, kDeferred). Gets the message's
// envelope, only the updates of those recipients and their handoffs in step (empty: none
// delivered); nullopt = no DSN (NOTIFY=NEVER, ...). Never called for a message with a null
// reverse path: bounces are not bounced.
using DsnBuilder = std::function<std::optional<spool::NewMessage>(
    const spool::Envelope&, const std::vector<spool::RecipientUpdate>&,
    const std::vector<Handoff>&)>;

// How long a delivery's outcome waits for others to share its commit (one fdatasync for
// all of them). The delivery's store slot is free already (Drain::conversation_ended), so
// the wait costs the store nothing, only the message's lease (it is not picked again).
inline constexpr std::chrono::milliseconds kOutcomeLinger{10};

class OutcomeWriter {
public:
    // `executor` runs the linger timer. A `linger` of zero submits each outcome at once.
    OutcomeWriter(const boost::asio::any_io_executor& executor, spool::Spool& spool,
                  DsnBuilder make_dsn, std::chrono::milliseconds linger = kOutcomeLinger);

    struct Committed {
        Status status;
        std::optional<QueueId> dsn; // the DSN enqueued with the outcomes, when there was one
    };
    // Records `updates` of `env` (after up to the linger, with the outcomes that come
    // meanwhile); with `with_dsn`, the failed and expired ones among them,
    // and the delivered ones that asked for it, get a DSN in the same transaction. One of our DSNs
    // that the smarthost refused is not failed (it would be dropped: a DSN gets no DSN) but held
    // for the administrator, logged at warn and counted (spoold_dsns_held_total). Resumes on the
    // awaiting coroutine's executor after the commit (or its failure: then nothing was recorded and
    // the message stays as it was).
    boost::asio::awaitable<Committed> commit(spool::Envelope env,
                                             std::vector<spool::RecipientUpdate> updates,
                                             bool with_dsn, std::vector<Handoff> handoffs = {});
    // A write of many messages in one commit: the batch's status and, when it committed,
    // each item's.
    struct Batch {
        Status status;
        std::vector<Status> items;
    };
    // Submits the outcomes lingering now (the drain cannot start a delivery before one
    // commits, or it stops).
    void flush();
    // Retention for many messages in one commit (spool::Spool::expire).
    boost::asio::awaitable<Batch> expire(std::vector<spool::Expiry> items, UnixMillis now);
    // The delay warning for `env`'s recipients not final yet; nullopt when none of them asks
    // for one (NOTIFY), for the null sender, or without a builder.
    std::optional<spool::NewMessage> build_delay_warning(const spool::Envelope& env);
    // Delay warnings spooled with their messages' kFlagDelayWarned, many in one commit
    // (spool::Spool::record_delay_warnings).
    boost::asio::awaitable<Batch> warn_delayed(std::vector<spool::DelayWarning> items);
    // Class and expiry of each message as given, submitted together (one group commit);
    // the first failure, if any.
    boost::asio::awaitable<Status>
    reclassify(std::vector<std::pair<QueueId, spool::Reclassification>> changes);
    // The DSN for those of `updates` that failed or expired, or were delivered with
    // NOTIFY=SUCCESS and not passed on to a next hop that reports itself (`handoffs` in step
    // with `updates`; empty: none delivered); nullopt when none is due (NOTIFY, a null
    // sender, no builder).
    std::optional<spool::NewMessage> build_dsn(const spool::Envelope& env,
                                               const std::vector<spool::RecipientUpdate>& updates,
                                               const std::vector<Handoff>& handoffs = {});

private:
    boost::asio::awaitable<Status> write(std::function<void(spool::Done)> submit);
    // write() after the linger: submitted with the others at its end, or by flush().
    boost::asio::awaitable<Status> write_lingering(std::function<void(spool::Done)> submit);
    // write() for a batch: each item's status too, when the batch committed.
    boost::asio::awaitable<Batch> write_batch(std::function<void(spool::BatchDone)> submit);

    spool::Spool& spool_;
    DsnBuilder make_dsn_;
    std::chrono::milliseconds linger_;
    boost::asio::steady_timer linger_timer_;
    std::vector<std::function<void()>> lingering_; // submissions waiting for the timer
    // The timer's handler holds it weakly: it may run after the writer is gone.
    std::shared_ptr<char> alive_ = std::make_shared<char>();
};

} // namespace spoold::drain
