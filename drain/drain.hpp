// The drain engine: takes ready messages from the spool (via the Scheduler), delivers
// them into the mailstore under the breaker and the pacing limits, and records every
// recipient's outcome back through the spool's writer; also promotes due deferrals and
// applies retention expiry. It does not speak LMTP/SMTP (connectors do) nor build DSNs
// (the make_dsn hook does).
#pragma once

#include <array>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "drain/breaker.hpp"
#include "drain/mailstore.hpp"
#include "drain/pacing.hpp"
#include "drain/scheduler.hpp"
#include "policy/config.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

// Builds the DSN for recipients that just became final without delivery (kFailed, or
// kExpired under retention action "bounce"). Gets the message's envelope and only the
// updates of those recipients; nullopt = no DSN (NOTIFY=NEVER, ...). Never called for a
// message with a null reverse path: bounces are not bounced.
using DsnBuilder = std::function<std::optional<spool::NewMessage>(
    const spool::Envelope&, const std::vector<spool::RecipientUpdate>&)>;

struct MailstoreStatus {
    std::string name;
    BreakerState breaker = BreakerState::kClosed;
    UnixMillis next_probe_ms = 0;        // when open
    std::uint32_t concurrency_limit = 0; // what pacing and the breaker allow now
    std::uint32_t in_flight = 0;
    std::int64_t best_latency_ms = 0;
    bool paused = false; // by spoolctl pause --mailstore NAME (spool meta "paused.NAME")
    // Recipients since start by outcome at this store, and messages with at least one
    // recipient delivered here.
    std::uint64_t delivered = 0;
    std::uint64_t deferred = 0;
    std::uint64_t failed = 0;
    std::uint64_t messages_delivered = 0;
};

struct DrainSnapshot {
    bool running = false;
    bool paused = false; // by pause() or by spoolctl (spool meta "paused" = "1")
    bool stopping = false;
    std::vector<MailstoreStatus> mailstores;
    // Recipients since start, by the outcome recorded for them.
    std::uint64_t delivered = 0;
    std::uint64_t deferred = 0;
    std::uint64_t failed = 0;
    std::uint64_t expired = 0;
    std::uint64_t poison = 0;             // deliveries deferred as poison (kPoisonStrikes)
    std::uint64_t messages_delivered = 0; // messages with at least one recipient delivered
    double rate_per_s = 0;                // messages_delivered per second, last 10 s
    // Turns of the drain's loop since start (each one housekeeping or a stop check): what
    // a test awaits to know the loop has looked again, instead of waiting real time.
    std::uint64_t loop_turns = 0;
};

// How often housekeeping runs (by the Clock) and how often the loop wakes (real time).
inline constexpr std::int64_t kPromoteIntervalMs = 1000;
inline constexpr std::int64_t kPauseCheckIntervalMs = 1000;
inline constexpr std::int64_t kExpiryIntervalMs = 5000;
inline constexpr std::size_t kExpiryBatch = 256;
inline constexpr std::size_t kDsnScanBatch = 2048; // envelopes per tick of the start-up scan
inline constexpr std::chrono::milliseconds kTick{50};
inline constexpr std::chrono::milliseconds kDefaultStopGrace{std::chrono::seconds(30)};
inline constexpr std::size_t kBodyPieceBytes = 256 * 1024;
// A message whose delivery met mailstore trouble this many times while the store's
// breaker was closed, with other deliveries succeeding in between, is taken to be the
// trouble itself (a poison message: it crashes or hangs the store's delivery process).
// From then on its trouble defers it with backoff, counting an attempt, and no longer
// counts against the store's breaker and pacing. While the breaker is half-open, its
// test deliveries prefer messages without strikes, so such a message cannot keep a store
// that works from closing again.
inline constexpr std::uint32_t kPoisonStrikes = 3;
// Most messages whose strikes are remembered; beyond it the record starts afresh.
inline constexpr std::size_t kPoisonMemory = 100'000;

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
    // Call on the executor (status and metrics handlers run there).
    DrainSnapshot snapshot() const;

private:
    struct Store {
        std::unique_ptr<Mailstore> mailstore;
        Breaker breaker;
        ConcurrencyLimit pacing;
        RateLimiter rate;
        std::uint32_t in_flight = 0;
        bool paused = false; // spool meta "paused.<name>"
        bool probing = false;
        std::unique_ptr<boost::asio::cancellation_signal> probe_cancel;
        // Advances whenever a delivery to the store succeeds: poison strikes count only
        // across such evidence.
        std::uint64_t health_epoch = 0;
        std::uint64_t delivered = 0; // recipients, since start
        std::uint64_t deferred = 0;
        std::uint64_t failed = 0;
        std::uint64_t messages_delivered = 0;
    };
    struct Strikes {
        std::uint32_t count = 0;
        std::uint64_t epoch = 0; // the store's health_epoch at the last strike
        std::size_t store = 0;
    };
    struct InFlight {
        std::vector<std::size_t> stores; // the stores a slot was taken in
        std::unique_ptr<boost::asio::cancellation_signal> cancel;
    };
    // The queued recipients of one message that go to one store (positions in the
    // envelope), delivered in one transaction.
    struct Group {
        std::size_t store = 0;
        std::vector<std::uint32_t> indexes;
    };

    boost::asio::awaitable<void> run();
    boost::asio::awaitable<void> deliver_one(Pick pick, std::vector<std::size_t> stores);
    // Delivers one group and feeds the store's breaker and pacing with the result.
    boost::asio::awaitable<DeliveryResult> deliver_group(const spool::Envelope& env,
                                                         const Group& group);
    boost::asio::awaitable<void> probe_one(std::size_t store);
    boost::asio::awaitable<void> expire_batch(std::vector<QueueId> ids);

    void apply_config(std::shared_ptr<const policy::Config> config);
    void housekeeping();
    void pump();
    void pump_dsns();
    // One batch of the start-up scan for DSNs; then, due deferred DSNs into the lane.
    void feed_dsn_lane(UnixMillis now);
    void note_dsn(const spool::Envelope& env);
    // Takes a slot in each store in `stores` (that has room) and starts the delivery;
    // false (and the lease released) when none had room.
    bool launch(Pick pick, std::vector<std::size_t> stores);
    // The stores `pick`'s recipients go to that have room now.
    std::vector<std::size_t> stores_with_room(const Pick& pick) const;
    bool has_room(const Store& s) const;
    // Whether message `id` is kept from half-open store `store` (it has strikes there).
    bool kept_from_trial(QueueId id, std::size_t store) const;
    bool can_take(std::size_t store, QueueId id) const;
    // A half-open mailstore has room and nothing in flight (its trial waits for a message).
    bool trial_waiting() const;
    void start_probes();
    void finish_delivery(QueueId id);
    bool idle() const;
    bool paused() const { return paused_local_ || paused_meta_; }
    // Where a recipient of a message with `flags` is delivered: the DSN relay for our
    // DSNs, else the mailstore that lists its domain, else the default mailstore.
    std::size_t route(std::string_view address, std::uint32_t flags) const;
    void build_routes(const policy::Config& config);
    std::uint32_t allowed(const Store& s) const;
    // Submits a spool write whose Done is posted back here, counted for stop().
    void submit_write(std::string what, std::function<void(spool::Done)> submit);
    void count_delivered_message();
    // Notes mailstore trouble met by message `id` at `store`; true when the message is
    // now judged to be poison (see kPoisonStrikes).
    bool poison_strike(QueueId id, std::size_t store);
    void wake();

    boost::asio::any_io_executor executor_;
    spool::Spool& spool_;
    std::shared_ptr<const policy::Config> config_;
    const Clock& clock_;
    DsnBuilder make_dsn_;
    std::vector<Store> stores_;
    std::size_t mailstore_count_ = 0;      // stores_[0, count) are Config::mailstores
    std::optional<std::size_t> dsn_store_; // index in stores_ of the DSN relay
    std::unordered_map<std::string, std::size_t> routes_; // lower-cased domain -> store
    std::size_t default_store_ = 0;
    Admit admit_;          // the scheduler's filter: some store the candidate goes to has room
    bool lenient_ = false; // admit_ lets messages with strikes into half-open stores too
    // DSNs to send through the relay now, even while the mailstore is down: the ones
    // this process spooled, the ones a start-up scan found in the spool (left from before
    // a restart), and deferred ones whose retry came due.
    std::deque<QueueId> dsn_queue_;
    // Deferred DSNs by the time of their next attempt.
    std::multimap<UnixMillis, QueueId> dsn_deferred_;
    // The start-up scan for DSNs walks the spool in id order, a batch per tick.
    QueueId dsn_scan_after_{};
    bool dsn_scan_done_ = false;
    Scheduler scheduler_;
    boost::asio::steady_timer wake_;

    bool started_ = false;
    bool running_ = false;
    bool stopping_ = false;
    bool paused_local_ = false;
    bool paused_meta_ = false;
    bool expiry_running_ = false;
    std::uint64_t loop_turns_ = 0;
    std::chrono::milliseconds stop_grace_{kDefaultStopGrace};
    std::vector<std::function<void()>> on_stopped_;
    std::unordered_map<std::uint64_t, InFlight> in_flight_;
    std::unordered_map<std::uint64_t, Strikes> strikes_; // by queue id
    std::uint32_t writes_pending_ = 0;
    UnixMillis next_promote_ms_ = 0;
    UnixMillis next_pause_check_ms_ = 0;
    UnixMillis next_expiry_ms_ = 0;
    UnixMillis local_backoff_until_ms_ = 0; // after a failed spool write

    std::uint64_t delivered_ = 0;
    std::uint64_t deferred_ = 0;
    std::uint64_t failed_ = 0;
    std::uint64_t expired_ = 0;
    std::uint64_t poison_ = 0; // deliveries deferred as poison
    std::uint64_t messages_delivered_ = 0;
    static constexpr std::size_t kRateSeconds = 10;
    std::array<std::uint64_t, kRateSeconds> rate_count_{};
    std::array<std::int64_t, kRateSeconds> rate_second_{};
};

// Per-recipient retry delay after a 4xx: retry_min doubled per earlier attempt, capped.
std::chrono::milliseconds retry_delay(const policy::DrainConfig& config, std::uint32_t attempts);

// What a delivery result means for each recipient in `indexes` (positions in the
// envelope), at `now`. Session-level mailstore trouble leaves recipients queued and
// uncounted; see the .cpp for the table.
std::vector<spool::RecipientUpdate> map_result(const spool::Envelope& env,
                                               const std::vector<std::uint32_t>& indexes,
                                               const DeliveryResult& result,
                                               const policy::DrainConfig& config, UnixMillis now);

} // namespace spoold::drain
