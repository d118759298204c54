#include "daemon/daemon.hpp"

#include <algorithm>
#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <cstring>
#include <limits>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>
#include <fmt/format.h>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "common/version.hpp"
#include "daemon/dsn_hook.hpp"
#include "daemon/fleet_status.hpp"
#include "daemon/http/server.hpp"
#include "policy/config_reload.hpp"
#include "policy/xfer_peers.hpp"
#include "drain/connectors/connectors.hpp"
#include "drain/drain.hpp"
#include "fleet/coordinator.hpp"
#include "milter/chain.hpp"
#include "policy/retention.hpp"
#include "smtp/server.hpp"

namespace spoold::daemon {
namespace {

milter::ChainSettings chain_settings(const policy::Config& config) {
    milter::ChainSettings s;
    s.hostname = config.hostname;
    s.daemon_name = config.our_authserv_id();
    s.version = kVersion;
    s.milters = config.milters;
    return s;
}

// Port 25 needs root (or CAP_NET_BIND_SERVICE); nothing after binding does. Drop to the
// configured user for good: supplementary groups, then the group, then the user.
Status drop_privileges(const std::string& user) {
    if (user.empty() || ::geteuid() != 0) {
        return {};
    }
    const passwd* pw = ::getpwnam(user.c_str());
    if (pw == nullptr) {
        return fail(ErrorKind::kConfig, "user \"" + user + "\" does not exist");
    }
    if (::initgroups(pw->pw_name, pw->pw_gid) != 0 || ::setgid(pw->pw_gid) != 0 ||
        ::setuid(pw->pw_uid) != 0) {
        return fail(ErrorKind::kIo,
                    "cannot switch to user \"" + user + "\": " + std::strerror(errno));
    }
    if (::setuid(0) == 0) {
        return fail(ErrorKind::kInternal, "root privileges could be regained after the switch");
    }
    log::info("event=privileges_dropped user={} uid={} gid={}", log::quote(user), pw->pw_uid,
              pw->pw_gid);
    return {};
}

static_assert(policy::kMaxClasses == spool::kMaxClasses, "policy and spool agree on classes");

constexpr std::chrono::milliseconds kTickInterval{250};
constexpr std::int64_t kPublishIntervalMs = 2000;
constexpr std::chrono::seconds kStopGrace{20};

// logging.level and logging.format, at start and on reload (the loader validated both).
void apply_logging(const policy::Config& config) {
    log::Level level = log::Level::kInfo;
    if (log::parse_level(config.log_level, level)) {
        log::set_level(level);
    }
    log::Format format = log::Format::kKeyValue;
    if (log::parse_format(config.log_format, format)) {
        log::set_format(format, config.hostname);
    }
}

std::string join_class_names(const policy::Config& config) {
    std::string out;
    for (const auto& c : config.classes) {
        if (!out.empty()) {
            out += ',';
        }
        out += c.name;
    }
    return out;
}

} // namespace

Daemon::Daemon(std::string config_path, std::shared_ptr<const policy::Config> config)
    : config_path_(std::move(config_path)), config_(std::move(config)), started_(config_) {}

Daemon::~Daemon() = default;

Status Daemon::open_spool() {
    spool::SpoolOptions options;
    options.path = config_->spool.path;
    options.max_size_bytes = config_->spool.max_size;
    auto opened = spool::Spool::open(options);
    if (!opened) {
        return tl::unexpected(opened.error());
    }
    spool_ = std::move(*opened);
    SPOOLD_CHECK(publish_names(true));
    directory_ = std::make_unique<DirectoryLoader>(
        config_->spool.path + "/directory",
        [io = io_.get()](std::function<void()> f) { boost::asio::post(*io, std::move(f)); });
    if (config_->directory.file.empty()) {
        // Unknown users are then refused only by the mailstore, after the outage, and the
        // DSNs go to senders who are often forged (counted: spoold_dsns_unknown_recipient_total).
        log::warn("event=no_recipient_directory note={}",
                  log::quote("directory.file is not set: every address in a local domain is "
                             "accepted, and mail for unknown users bounces later (backscatter)"));
    }
    return {};
}

// spoolctl in another process names classes and mailstores from these meta keys. At start
// the writes are waited for (a spool that cannot take them is not started on); on reload
// a failure is logged.
Status Daemon::publish_names(bool wait) {
    std::string stores;
    for (const auto& m : config_->mailstores) {
        stores += (stores.empty() ? "" : ",") + m.name;
    }
    const std::array<std::pair<std::string, std::string>, 2> names{
        {{"classes", join_class_names(*config_)}, {"mailstores", stores}}};
    for (const auto& [key, value] : names) {
        if (!wait) {
            spool_->put_meta(key, value, [k = key](Status st) {
                if (!st) {
                    log::error("event=meta_write_failed key={} error={}", k,
                               log::quote(st.error().describe()));
                }
            });
            continue;
        }
        const std::string& k = key;
        const std::string& v = value;
        SPOOLD_CHECK(
            spool_->wait([&](spool::Done done) { spool_->put_meta(k, v, std::move(done)); }));
    }
    return {};
}

void Daemon::load_directory(const policy::DirectoryConfig& config, DirectoryLoader::Done done) {
    if (config.file.empty()) {
        if (done) {
            done({});
        }
        return;
    }
    directory_->load(config, std::move(done));
}

namespace {

// A peer in xfer.peers moving its queue to us keeps the message's class (when we know it),
// arrival and expiry; anyone else's claim is ignored and the message classified as new.
std::optional<ClassDecision> trusted_xfer(const policy::Config& config,
                                          const policy::XferPeers& peers,
                                          const smtp::MessageInfo& info) {
    if (!info.xfer || !peers.trusts(info.client_addr)) {
        return std::nullopt;
    }
    const auto klass = config.class_id(info.xfer->class_name);
    if (!klass) {
        return std::nullopt;
    }
    ClassDecision d;
    d.klass = *klass;
    d.name = info.xfer->class_name;
    d.expires_ms = info.xfer->expires_ms;
    d.arrival_ms = info.xfer->arrival_ms;
    return d;
}

} // namespace

Result<IntakeHooks> Daemon::make_hooks(const std::shared_ptr<const policy::Config>& config) {
    auto classifier = policy::Classifier::compile(*config);
    if (!classifier) {
        return tl::unexpected(classifier.error());
    }
    auto recipients = std::make_shared<const policy::RecipientPolicy>(
        config->local_domains, directory_->lookup(config->directory), config->directory);
    auto compiled = std::make_shared<const policy::Classifier>(std::move(*classifier));

    IntakeHooks hooks;
    auto& rejected = metrics::spoold_metrics().messages_rejected_total;
    metrics::Counter* relay_denied = &rejected.with({std::string(metrics::kRejectRelayDenied)});
    metrics::Counter* unknown = &rejected.with({std::string(metrics::kRejectUnknownRecipient)});
    metrics::Counter* local = &rejected.with({std::string(metrics::kRejectLocalError)});
    hooks.check_recipient = [recipients, relay_denied, unknown, local](const std::string& address) {
        switch (recipients->check(address)) {
        case policy::Verdict::kAccept: return smtp::RecipientVerdict::kAccept;
        case policy::Verdict::kRelayDenied:
            relay_denied->inc();
            return smtp::RecipientVerdict::kRelayDenied;
        case policy::Verdict::kUnknownUser:
            unknown->inc();
            return smtp::RecipientVerdict::kUnknownUser;
        case policy::Verdict::kTempFail: local->inc(); return smtp::RecipientVerdict::kTempFail;
        }
        return smtp::RecipientVerdict::kTempFail;
    };
    auto peers = std::make_shared<const policy::XferPeers>(*config);
    hooks.classify = [compiled, config, peers](const ClassifyInput& in, UnixMillis arrival_ms) {
        if (auto d = trusted_xfer(*config, *peers, *in.info)) {
            return *d;
        }
        policy::MessageFacts facts;
        facts.sender = in.info->mail_from;
        facts.recipients.reserve(in.info->recipients.size());
        for (const auto& r : in.info->recipients) {
            facts.recipients.emplace_back(r.address);
        }
        facts.client_address = in.info->client_addr;
        facts.size = in.size;
        facts.header_block = in.header_block;
        ClassDecision d;
        d.klass = compiled->classify(facts);
        d.name = config->classes.at(d.klass).name;
        d.expires_ms = policy::expiry_ms(*config, d.klass, arrival_ms);
        return d;
    };
    return hooks;
}

int Daemon::run() {
    apply_logging(*config_);
    started_ms_ = SystemClock::instance().now_ms();
    if (const Status st = open_spool(); !st) {
        log::error("event=spool_open_failed path={} error={}", log::quote(config_->spool.path),
                   log::quote(st.error().describe()));
        return 1;
    }
    // The directory loads while the rest starts; "ready" waits for it (a restart with the
    // same file finds its table already built).
    bool directory_ready = false;
    bool started = false;
    const auto announce = [this, &directory_ready, &started] {
        if (directory_ready && started) {
            log::info("event=ready config={} spool={}", log::quote(config_path_),
                      log::quote(config_->spool.path));
        }
    };
    load_directory(config_->directory, [&directory_ready, announce](const Status&) {
        directory_ready = true;
        announce();
    });
    auto hooks = make_hooks(config_);
    if (!hooks) {
        log::error("event=config_failed error={}", log::quote(hooks.error().message));
        return 1;
    }
    intake_ = std::make_unique<SpoolIntake>(*spool_, std::move(*hooks), SystemClock::instance());
    update_admission();

    // Our name in LHLO/EHLO and in Maildir file names (a relay may refuse "localhost").
    drain::connectors::ConnectorOptions connector_options;
    connector_options.hostname = config_->hostname;
    std::vector<std::unique_ptr<drain::Mailstore>> stores;
    for (const auto& mc : config_->mailstores) {
        stores.push_back(
            drain::connectors::make_mailstore(io_->get_executor(), mc, connector_options));
    }
    config_holder_ = std::make_shared<std::shared_ptr<const policy::Config>>(config_);
    drain_ = std::make_unique<drain::Drain>(
        io_->get_executor(), *spool_, *config_, std::move(stores), SystemClock::instance(),
        make_dsn_builder(*spool_, config_holder_, SystemClock::instance()));
    if (!config_->mailstores.empty()) {
        drain_->set_dsn_relay(drain::connectors::make_smarthost(
            io_->get_executor(), config_->bounces, connector_options));
    }
    start_fleet();
    reporter_ = std::make_unique<StatusReporter>(started_ms_);

    filters_ = std::make_unique<milter::MilterFilters>(*io_, chain_settings(*config_));
    server_ = std::make_unique<smtp::Server>(*io_, *config_, *intake_, filters_.get());
    auto endpoints = server_->start();
    if (!endpoints) {
        log::error("event=listen_failed error={}", log::quote(endpoints.error().describe()));
        return 1;
    }
    for (const auto& ep : *endpoints) {
        log::info("event=listening address={} port={}", ep.address().to_string(), ep.port());
    }

    if (config_->metrics.port != 0) {
        StatusReporter* reporter = reporter_.get();
        http_ = std::make_unique<http::HttpServer>(io_->get_executor(), config_->metrics.address,
                                                   config_->metrics.port,
                                                   [reporter] { return reporter->json(); });
        auto port = http_->start();
        if (!port) {
            log::error("event=metrics_listen_failed error={}", log::quote(port.error().describe()));
            return 1;
        }
        log::info("event=metrics_listening address={} port={}", config_->metrics.address, *port);
    }
    if (const Status dropped = drop_privileges(config_->user); !dropped) {
        log::error("event=privilege_drop_failed error={}", log::quote(dropped.error().describe()));
        return 1;
    }
    sample_status();

    auto signals = std::make_unique<boost::asio::signal_set>(*io_, SIGHUP, SIGTERM, SIGINT);
    std::function<void(const boost::system::error_code&, int)> on_signal;
    on_signal = [&](const boost::system::error_code& ec, int signo) {
        if (ec) {
            return;
        }
        if (signo == SIGHUP) {
            reload();
        } else {
            log::info("event=signal signal={}", signo == SIGTERM ? "TERM" : "INT");
            shutdown();
        }
        if (!stopping_) {
            signals->async_wait(on_signal);
        }
    };
    signals->async_wait(on_signal);
    std::signal(SIGPIPE, SIG_IGN);

    drain_->start();
    if (fleet_) {
        fleet_->start();
    }
    schedule_tick();
    started = true;
    announce();
    io_->run();
    // Teardown order: objects that own Asio I/O objects go while the io_context lives;
    // then the io_context, whose leftover coroutine frames (a session whose commit
    // outlived the grace) roll their message back into the still-open spool; then the
    // intake and the spool, whose destructor drains the writer queue and joins it.
    signals.reset();
    tick_timer_.reset();
    http_.reset();
    drain_.reset();
    fleet_.reset();
    server_.reset();
    directory_.reset(); // before the io_context its completions are posted to
    io_.reset();
    filters_.reset();
    intake_.reset();
    spool_.reset();
    log::info("event=stopped");
    return exit_status_;
}

void Daemon::start_fleet() {
    if (!config_->fleet.coordinated()) {
        return;
    }
    fleet_ = std::make_unique<fleet::Coordinator>(io_->get_executor(), *config_,
                                                  SystemClock::instance());
    for (const auto& share : fleet_->shares()) {
        if (!drain_->set_budget(share->store(), *share)) {
            log::error("event=fleet_budget_unused mailstore={}", log::quote(share->store()));
        }
    }
    fleet_->set_status_source([this] { return fleet_status_; });
}

void Daemon::schedule_tick() {
    tick_timer_->expires_after(kTickInterval);
    tick_timer_->async_wait([this](const boost::system::error_code& ec) {
        if (ec || stopping_) {
            return;
        }
        tick();
        schedule_tick();
    });
}

void Daemon::tick() {
    update_admission();
    const UnixMillis now = SystemClock::instance().now_ms();
    const auto poll = config_->directory.poll_interval.count();
    if (poll > 0 && now >= next_directory_poll_ms_) {
        next_directory_poll_ms_ = now + poll;
        if (!directory_->busy()) { // a reload's load decides first
            load_directory(config_->directory, {});
        }
    }
    sample_status();
    if (now >= next_publish_ms_) {
        next_publish_ms_ = now + kPublishIntervalMs;
        publish_state();
    }
}

void Daemon::sample_status() {
    auto counters = spool_->counters();
    auto oldest = spool_->oldest();
    if (!counters || !oldest) {
        return;
    }
    const drain::DrainSnapshot snap = drain_->snapshot();
    StatusInputs in;
    in.now_ms = SystemClock::instance().now_ms();
    in.config = config_.get();
    in.counters = &*counters;
    in.oldest = *oldest;
    if (auto space = spool_->space()) {
        in.space = *space;
    }
    in.drain = &snap;
    in.smtp_sessions = server_ ? server_->session_count() : 0;
    in.accepted_total = intake_->accepted_total();
    if (fleet_ && fleet_->view()) {
        in.fleet_json = fleet::view_json(*fleet_->view());
    }
    reporter_->sample(in);
    if (fleet_) {
        fleet_status_ = fleet_node_status(in);
    }
}

void Daemon::update_admission() {
    auto space = spool_->space();
    if (!space) {
        intake_->set_accepting(false, space.error().describe());
        return;
    }
    const auto& sc = config_->spool;
    const auto limit = accept_limit_bytes(*space, sc);
    if (space->used_bytes >= limit) {
        intake_->set_accepting(
            false, fmt::format("spool at {} of {} bytes", space->used_bytes, space->map_size));
    } else if (space->fs_free_bytes < sc.min_free_disk) {
        intake_->set_accepting(false, fmt::format("{} bytes free on disk", space->fs_free_bytes));
    } else {
        // Until the next sample, admit only what still fits under both limits: at full
        // ingest speed a tick's worth of mail would otherwise overshoot the watermark.
        const std::uint64_t room =
            std::min(limit - space->used_bytes, space->fs_free_bytes - sc.min_free_disk);
        intake_->set_accepting(
            true, "",
            static_cast<std::int64_t>(std::min<std::uint64_t>(
                room, static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))));
    }
}

void Daemon::publish_state() {
    // spoolctl status runs in another process: it reads the drain's state from meta.
    // Only changes are written: each write is a durable commit.
    const drain::DrainSnapshot snap = drain_->snapshot();
    auto publish = [this](std::string key, std::string value) {
        auto& last = published_[key];
        if (last == value) {
            return;
        }
        last = value;
        spool_->put_meta(std::move(key), std::move(value), [](const Status&) {});
    };
    for (const auto& ms : snap.mailstores) {
        // "closed limit=2 in_flight=0": spoolctl's parse_breaker_meta reads it back.
        publish("mailstore." + ms.name + ".breaker",
                fmt::format("{} limit={} in_flight={}", drain::to_string(ms.breaker),
                            ms.concurrency_limit, ms.in_flight));
        publish("mailstore." + ms.name + ".rate",
                fmt::format("{:.1f}", reporter_->mailstore_rate(ms.name)));
    }
}

// Everything is prepared before anything changes, so a refused reload leaves the daemon
// exactly as it was. Keys read only at start are named in one warning (config_reload.hpp).
void Daemon::reload() {
    auto fresh = policy::load_config(config_path_);
    if (!fresh) {
        log::error("event=reload_refused error={}", log::quote(fresh.error().message));
        return;
    }
    if (auto hooks = make_hooks(*fresh); !hooks) {
        log::error("event=reload_refused error={}", log::quote(hooks.error().message));
        return;
    }
    const policy::DirectoryConfig& directory = (*fresh)->directory;
    if (directory.file.empty() || DirectoryLoader::same_source(directory, config_->directory)) {
        apply_reload(*fresh);
        // The same file read again in the background: a failure keeps the table loaded.
        load_directory(directory, {});
        return;
    }
    // A new source (turned on, another file or format) must load first, beside the live
    // table and off this thread; the reload is refused with the whole config when it cannot.
    load_directory(directory, [this, config = *fresh](const Status& loaded) {
        if (!loaded) {
            log::error("event=reload_refused error={}", log::quote(loaded.error().describe()));
            return;
        }
        apply_reload(config);
    });
}

void Daemon::apply_reload(std::shared_ptr<const policy::Config> fresh) {
    auto hooks = make_hooks(fresh);
    if (!hooks) {
        log::error("event=reload_refused error={}", log::quote(hooks.error().message));
        return;
    }
    if (fresh->directory.file.empty() && !config_->directory.file.empty()) {
        log::warn("event=directory_off note={}",
                  log::quote("no recipient directory: every address in a local domain is "
                             "accepted"));
    }
    config_ = std::move(fresh);
    *config_holder_ = config_;
    apply_logging(*config_);
    intake_->set_hooks(std::move(*hooks));
    filters_->reconfigure(chain_settings(*config_));
    server_->reconfigure(*config_);
    drain_->reconfigure(config_);
    (void)publish_names(false);
    if (const auto keys = policy::restart_needed(*started_, *config_); !keys.empty()) {
        std::string names;
        for (const auto& k : keys) {
            names += (names.empty() ? "" : ", ") + k;
        }
        log::warn("event=reload_restart_needed note={}",
                  log::quote("restart needed for: " + names));
    }
    if (fleet_) {
        fleet_->reconfigure(*config_);
    }
    log::info("event=reloaded config={}", log::quote(config_path_));
}

void Daemon::shutdown() {
    if (stopping_) {
        return;
    }
    stopping_ = true;
    tick_timer_->cancel();
    server_->stop(kStopGrace, [this] {
        drain_->stop(
            [this] {
                // The drain is idle: give the fleet back this node's slots, then stop.
                auto finish = [this] {
                    if (http_) {
                        http_->stop();
                    }
                    io_->stop();
                };
                if (fleet_) {
                    fleet_->stop(finish);
                } else {
                    finish();
                }
            },
            kStopGrace);
    });
}

} // namespace spoold::daemon
