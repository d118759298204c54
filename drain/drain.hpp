// The drain's coordinator: pumps ready messages from the Scheduler into stores with room,
// runs each delivery (group, deliver, commit) and the housekeeping (pause flags, promotion,
// expiry, the recipient sweep, DSN lane, probes). Its pieces live in their own files; it speaks no
// LMTP/SMTP.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "drain/bulk_pacer.hpp"
#include "drain/dsn_lane.hpp"
#include "drain/delay_warnings.hpp"
#include "drain/expiry.hpp"
#include "drain/group_delivery.hpp"
#include "drain/mail_log.hpp"
#include "drain/mailbox_backoff.hpp"
#include "drain/mailstore.hpp"
#include "drain/outcome.hpp"
#include "drain/outcome_writer.hpp"
#include "drain/poison_tracker.hpp"
#include "drain/recipient_sweep.hpp"
#include "drain/routes.hpp"
#include "drain/scheduler.hpp"
#include "drain/stats.hpp"
#include "drain/status.hpp"
#include "drain/store.hpp"
#include "policy/config.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

// How often housekeeping runs (by the Clock) and how often the loop wakes (real time).
inline constexpr std::int64_t kPromoteIntervalMs = 1000;
inline constexpr std::int64_t kPauseCheckIntervalMs = 1000;
inline constexpr std::chrono::milliseconds kTick{50};
inline constexpr std::chrono::milliseconds kDefaultStopGrace{std::chrono::seconds(30)};
// Messages parked at once without a delivery slot (a spool read and a commit each): past it
// the pump waits for one to finish.
inline constexpr std::uint32_t kMaxParking = 256;

class Drain {
public:
    // All work runs on `executor` (one thread, or a strand); every public function may
    // be called from any thread: they post to it. `mailstores` are in the order of
    // Config::mailstores. `clock` decides timing (backoff, retries, expiry, rates); the
    // loop itself wakes on real timers.
    Drain(boost::asio::any_io_executor executor, spool::Spool& spool, const policy::Config& config,
          std::vector<std::unique_ptr<Mailstore>> mailstores, const Clock& clock,
          DsnBuilder make_dsn = {});
    ~Drain();
    Drain(const Drain&) = delete;
    Drain& operator=(const Drain&) = delete;

    void start();
    // No new deliveries; in-flight ones get `grace` to finish, then are cancelled (their
    // recipients stay queued). `on_stopped` runs on the executor when nothing of the
    // drain runs any more; only then may the Drain be destroyed.
    void stop(std::function<void()> on_stopped = {},
              std::chrono::milliseconds grace = kDefaultStopGrace);
    // SIGHUP: new weights, limits, retry bounds. Mailstore connectors are not rebuilt.
    void reconfigure(std::shared_ptr<const policy::Config> config);
    void pause(bool paused);
    // The SMTP relay (bounces.smarthost) that DSNs we generated (kFlagDsn) go out
    // through, with its own breaker. Call before start(). Without it DSNs are routed by
    // recipient domain like any other message (to the default mailstore).
    void set_dsn_relay(std::unique_ptr<Mailstore> relay);
    // The budget mailstore `name` shares with other nodes (the fleet's); not owned, it must
    // outlive the drain. Call before start(). False when no mailstore has that name.
    bool set_budget(const std::string& name, Budget& budget);
    // Call on the executor (status and metrics handlers run there).
    DrainSnapshot snapshot() const;

private:
    struct InFlight {
        std::vector<std::size_t> stores; // the stores a slot was taken in
        spool::ClassId klass = 0;
        std::unique_ptr<boost::asio::cancellation_signal> cancel;
        bool parking = false; // park_one(), in no store's slot
        // Its store conversations ended: the slots are free again, the outcome commits (the
        // message stays leased, so it is not picked again until the commit ended).
        bool committing = false;
    };

    boost::asio::awaitable<void> run();
    // Message `id` was just added to the spool (the spool's arrival listener, on its writer
    // thread: an intake commit, or a DSN this drain spooled): the scheduler looks at it again
    // if its cursors may have passed its id already (Scheduler::arrived).
    void arrived(QueueId id);
    void housekeeping();
    // Moves due deferrals back to ready, a batch per commit sized by promote_pacer_, batch
    // after batch while more are due; the scheduler looks at what was moved.
    void promote(UnixMillis now);
    void check_pause_flags();
    void apply_config(std::shared_ptr<const policy::Config> config);

    void pump();
    void pump_dsns();
    // Takes a slot in each store in `stores` and starts the delivery; false (and the
    // lease released) when `stores` is empty.
    bool launch(Pick pick, std::vector<std::size_t> stores);
    // One message: read it, group its queued recipients by store, deliver the groups,
    // commit the outcomes, then count them and feed the DSN lane.
    boost::asio::awaitable<void> deliver_one(Pick pick, std::vector<std::size_t> stores);
    // Whether every recipient `pick` was leased for waits behind a trouble group of its
    // mailstore: then it is parked without a delivery slot, so parking a dead shard's mail
    // costs the stores nothing (not a slot, nor a half-open breaker's trial).
    bool parks_only(const Pick& pick) const;
    // Starts parking `pick`, in no store's slot; false (and the lease released) when
    // kMaxParking are being parked already.
    bool park(Pick pick);
    // One message: read it, park its recipients that wait behind a trouble group, commit.
    boost::asio::awaitable<void> park_one(Pick pick);
    // Runs `work` for leased message `pick` as in flight until it ends.
    void spawn(const Pick& pick, InFlight f, boost::asio::awaitable<void> work);
    // Message `id` as the spool has it now; none when it is gone or held, or the read failed
    // (logged, and the drain backs off).
    std::optional<spool::Envelope> read_queued(QueueId id);
    // Commits `updates` of `env`, writes their mail log lines (`log_routes`, empty when the
    // format has none) and feeds a DSN it made to the lane. False when nothing was recorded
    // (removed meanwhile; or the write failed, logged, and the drain backs off).
    boost::asio::awaitable<bool> record(spool::Envelope env,
                                        std::vector<spool::RecipientUpdate> updates,
                                        std::vector<Handoff> handoffs,
                                        std::vector<MailLogRoute> log_routes);
    // The store conversations of delivery `id` ended: its slots are released for the next
    // message while its outcome commits (outcomes of many deliveries then share a commit).
    void conversation_ended(QueueId id);
    // Whether another delivery may start as far as outcomes awaiting their commit go: fewer
    // than drain.max_concurrency of them, so a slow spool cannot let delivered but unrecorded
    // mail pile up (each is delivered again after a crash). When not, the lingering ones are
    // submitted at once.
    bool commits_have_room();
    void finish_delivery(QueueId id);

    // Flushes parked messages (a trouble group's probe, or the group its probe released)
    // and has the scheduler look at them.
    void release_parked(const std::vector<QueueId>& ids);
    // Trouble groups whose probe is due; every group of a store that just recovered.
    void probe_groups();

    void start_probes();
    boost::asio::awaitable<void> probe_one(std::size_t store);

    // The stores `pick`'s recipients go to that can take it now.
    std::vector<std::size_t> stores_with_room(const Pick& pick);
    bool any_mailstore_has_room() const;
    // Whether message `id` is kept from half-open store `store` (it has strikes there).
    bool kept_from_trial(QueueId id, std::size_t store) const;
    bool can_take(std::size_t store, QueueId id) const;
    // A half-open mailstore has room and nothing in flight (its trial waits for a message).
    bool trial_waiting() const;
    std::vector<std::string> running_mailstores() const;

    bool idle() const;
    bool paused() const { return paused_local_ || paused_meta_; }
    void wake();

    boost::asio::any_io_executor executor_;
    spool::Spool& spool_;
    std::shared_ptr<const policy::Config> config_;
    const Clock& clock_;
    bool stopping_ = false;
    std::vector<Store> stores_;
    std::size_t mailstore_count_ = 0; // stores_[0, count) are Config::mailstores
    Routes routes_;
    PoisonTracker poison_;
    MailboxBackoff backoff_;
    std::vector<BreakerState> breaker_seen_; // per mailstore, at the last probe_groups()
    DsnLane lane_;
    DrainStats stats_;
    Scheduler scheduler_;
    OutcomeWriter outcomes_;
    GroupDelivery groups_;
    Expiry expiry_;
    DelayWarnings delays_;
    RecipientSweep sweep_;
    Admit admit_;          // the scheduler's filter: some store the candidate goes to has room
    DomainRoom room_;      // the scheduler's lane filter: the domain's store has room
    bool lenient_ = false; // admit_ lets messages with strikes into half-open stores too
    boost::asio::steady_timer wake_;

    bool started_ = false;
    bool running_ = false;
    bool paused_local_ = false;
    bool paused_meta_ = false;
    std::chrono::milliseconds stop_grace_{kDefaultStopGrace};
    std::vector<std::function<void()>> on_stopped_;
    std::unordered_map<std::uint64_t, InFlight> in_flight_;
    std::uint32_t writes_pending_ = 0;
    std::uint32_t parking_ = 0;    // park_one() running
    std::uint32_t committing_ = 0; // InFlight::committing
    UnixMillis next_promote_ms_ = 0;
    bool promoting_ = false;
    BulkPacer promote_pacer_{spool::kMaxPromotePerOp};
    UnixMillis promote_started_ms_ = 0;
    UnixMillis next_pause_check_ms_ = 0;
    UnixMillis local_backoff_until_ms_ = 0; // after a failed spool read or write
    std::uint64_t loop_turns_ = 0;
};

} // namespace spoold::drain
