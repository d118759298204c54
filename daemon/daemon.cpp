#include "daemon/daemon.hpp"

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
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
#include "daemon/dsn_hook.hpp"
#include "daemon/http/server.hpp"
#include "drain/connectors/connectors.hpp"
#include "drain/drain.hpp"
#include "smtp/server.hpp"

namespace spoold::daemon {
namespace {

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

bool same_file(const struct stat& a, const struct stat& b) {
    return a.st_ino == b.st_ino && a.st_dev == b.st_dev && a.st_size == b.st_size &&
           a.st_mtim.tv_sec == b.st_mtim.tv_sec && a.st_mtim.tv_nsec == b.st_mtim.tv_nsec;
}

} // namespace

Daemon::Daemon(std::string config_path, std::shared_ptr<const policy::Config> config)
    : config_path_(std::move(config_path)), config_(std::move(config)) {}

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
    Status st = spool_->wait([&](spool::Done done) {
        spool_->put_meta("classes", join_class_names(*config_), std::move(done));
    });
    if (!st) {
        return st;
    }
    std::string stores;
    for (const auto& m : config_->mailstores) {
        stores += (stores.empty() ? "" : ",") + m.name;
    }
    st = spool_->wait(
        [&](spool::Done done) { spool_->put_meta("mailstores", stores, std::move(done)); });
    if (!st) {
        return st;
    }
    if (!config_->directory.file.empty()) {
        spool::DirectoryStoreOptions dopt;
        dopt.path = config_->spool.path + "/directory";
        auto dir = spool::DirectoryStore::open(dopt);
        if (!dir) {
            return tl::unexpected(dir.error());
        }
        directory_ = std::move(*dir);
    }
    return {};
}

void Daemon::load_directory(bool at_start) {
    const auto& dc = config_->directory;
    if (dc.file.empty() || !directory_) {
        return;
    }
    struct stat st {};
    if (::stat(dc.file.c_str(), &st) != 0) {
        log::error("event=directory_unreadable file={} error={}", log::quote(dc.file),
                   log::quote(std::strerror(errno)));
        return;
    }
    if (!at_start && directory_loaded_ && same_file(st, directory_stat_)) {
        return;
    }
    auto entries = policy::load_directory(dc);
    if (!entries) {
        // Keep what the store already holds: a broken edit must not empty the directory.
        log::error("event=directory_load_failed file={} error={}", log::quote(dc.file),
                   log::quote(entries.error().message));
        return;
    }
    std::vector<std::pair<std::string, std::string>> pairs;
    pairs.reserve(entries->size());
    for (auto& e : *entries) {
        pairs.emplace_back(std::move(e.key), std::move(e.target));
    }
    const std::size_t count = pairs.size();
    const Status stored = directory_->replace(std::move(pairs));
    if (!stored) {
        log::error("event=directory_store_failed error={}", log::quote(stored.error().describe()));
        return;
    }
    directory_stat_ = st;
    directory_loaded_ = true;
    log::info("event=directory_loaded file={} entries={}", log::quote(dc.file), count);
}

Result<IntakeHooks> Daemon::make_hooks(const std::shared_ptr<const policy::Config>& config) {
    auto classifier = policy::Classifier::compile(*config);
    if (!classifier) {
        return tl::unexpected(classifier.error());
    }
    policy::DirectoryLookup lookup;
    if (directory_ && !config->directory.file.empty()) {
        spool::DirectoryStore* store = directory_.get();
        const bool* loaded = &directory_loaded_;
        lookup = [store, loaded](std::string_view key) -> Result<std::optional<std::string>> {
            if (!*loaded) {
                return fail(ErrorKind::kUnavailable, "recipient directory not loaded");
            }
            return store->lookup(key);
        };
    }
    auto recipients = std::make_shared<const policy::RecipientPolicy>(
        config->local_domains, std::move(lookup), config->directory);
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
    hooks.classify = [compiled, config](const ClassifyInput& in, UnixMillis arrival_ms) {
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
        const auto& cls = config->classes.at(d.klass);
        d.name = cls.name;
        const auto retention_ms =
            std::chrono::duration_cast<std::chrono::milliseconds>(cls.retention).count();
        d.expires_ms = retention_ms > 0 ? arrival_ms + retention_ms : 0;
        return d;
    };
    return hooks;
}

int Daemon::run() {
    log::Level level = log::Level::kInfo;
    if (log::parse_level(config_->log_level, level)) {
        log::set_level(level);
    }
    started_ms_ = SystemClock::instance().now_ms();
    if (const Status st = open_spool(); !st) {
        log::error("event=spool_open_failed path={} error={}", log::quote(config_->spool.path),
                   log::quote(st.error().describe()));
        return 1;
    }
    load_directory(true);
    auto hooks = make_hooks(config_);
    if (!hooks) {
        log::error("event=config_failed error={}", log::quote(hooks.error().message));
        return 1;
    }
    intake_ = std::make_unique<SpoolIntake>(*spool_, std::move(*hooks), SystemClock::instance());
    update_admission();

    std::vector<std::unique_ptr<drain::Mailstore>> stores;
    for (const auto& mc : config_->mailstores) {
        stores.push_back(drain::connectors::make_mailstore(io_->get_executor(), mc));
    }
    config_holder_ = std::make_shared<std::shared_ptr<const policy::Config>>(config_);
    drain_ = std::make_unique<drain::Drain>(
        io_->get_executor(), *spool_, *config_, std::move(stores), SystemClock::instance(),
        make_dsn_builder(*spool_, config_holder_, SystemClock::instance()));
    if (!config_->mailstores.empty()) {
        drain_->set_dsn_relay(drain::connectors::make_smarthost(
            io_->get_executor(), config_->bounces.smarthost, config_->bounces.smarthost_port,
            config_->mailstores.front()));
    }
    reporter_ = std::make_unique<StatusReporter>(started_ms_);

    server_ = std::make_unique<smtp::Server>(*io_, *config_, *intake_);
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
    schedule_tick();
    log::info("event=ready config={} spool={}", log::quote(config_path_),
              log::quote(config_->spool.path));
    io_->run();
    // Teardown order: objects that own Asio I/O objects go while the io_context lives;
    // then the io_context, whose leftover coroutine frames (a session whose commit
    // outlived the grace) roll their message back into the still-open spool; then the
    // intake and the spool, whose destructor drains the writer queue and joins it.
    signals.reset();
    tick_timer_.reset();
    http_.reset();
    drain_.reset();
    server_.reset();
    io_.reset();
    intake_.reset();
    directory_.reset();
    spool_.reset();
    log::info("event=stopped");
    return exit_status_;
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
        load_directory(false);
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
    in.drain = &snap;
    in.smtp_sessions = server_ ? server_->session_count() : 0;
    in.accepted_total = intake_->accepted_total();
    reporter_->sample(in);
}

void Daemon::update_admission() {
    auto space = spool_->space();
    if (!space) {
        intake_->set_accepting(false, space.error().describe());
        return;
    }
    const auto& sc = config_->spool;
    const auto limit =
        static_cast<std::uint64_t>(static_cast<double>(space->map_size) * sc.high_watermark);
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
        spool_->put_meta(std::move(key), std::move(value), [](Status) {});
    };
    for (const auto& ms : snap.mailstores) {
        publish("mailstore." + ms.name + ".breaker",
                fmt::format("{} limit={} in_flight={}", drain::to_string(ms.breaker),
                            ms.concurrency_limit, ms.in_flight));
        publish("mailstore." + ms.name + ".rate",
                fmt::format("{:.1f}", reporter_->mailstore_rate(ms.name)));
    }
}

void Daemon::reload() {
    auto fresh = policy::load_config(config_path_);
    if (!fresh) {
        log::error("event=reload_refused error={}", log::quote(fresh.error().message));
        return;
    }
    auto hooks = make_hooks(*fresh);
    if (!hooks) {
        log::error("event=reload_refused error={}", log::quote(hooks.error().message));
        return;
    }
    if ((*fresh)->spool.path != config_->spool.path) {
        log::warn("event=reload_note note={}", log::quote("spool.path changes need a restart"));
    }
    config_ = *fresh;
    *config_holder_ = config_;
    log::Level level = log::Level::kInfo;
    if (log::parse_level(config_->log_level, level)) {
        log::set_level(level);
    }
    intake_->set_hooks(std::move(*hooks));
    server_->reconfigure(*config_);
    drain_->reconfigure(config_);
    load_directory(true);
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
                if (http_) {
                    http_->stop();
                }
                io_->stop();
            },
            kStopGrace);
    });
}

} // namespace spoold::daemon
