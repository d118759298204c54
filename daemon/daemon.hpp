// The running daemon: owns the spool, the directory, the intake, the SMTP server and
// the drain, and the timers that tie them together (admission, directory polling,
// publishing drain state for spoolctl). Decisions belong to the components.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <string>

#include "daemon/directory_loader.hpp"
#include "daemon/spool_intake.hpp"
#include "fleet/view.hpp"
#include "daemon/status_reporter.hpp"
#include "milter/chain.hpp"
#include "policy/classifier.hpp"
#include "policy/config.hpp"
#include "spool/spool.hpp"

namespace spoold::smtp {
class Server;
}
namespace spoold::drain {
class Drain;
}
namespace spoold::http {
class HttpServer;
}
namespace spoold::fleet {
class Coordinator;
}

namespace spoold::daemon {

class Daemon {
public:
    Daemon(std::string config_path, std::shared_ptr<const policy::Config> config);
    ~Daemon();
    // Runs until SIGTERM/SIGINT; returns the process exit status.
    int run();

private:
    Status open_spool();
    // Loads (or reloads) config.file in the background; `done` on the I/O thread.
    void load_directory(const policy::DirectoryConfig& config, DirectoryLoader::Done done);
    Result<IntakeHooks> make_hooks(const std::shared_ptr<const policy::Config>& config);
    void reload();
    // The part of a reload that changes what runs, once its directory (if new) is loaded.
    void apply_reload(std::shared_ptr<const policy::Config> fresh);
    void shutdown();
    void tick();
    void schedule_tick();
    void update_admission();
    void publish_state();
    Status publish_names(bool wait);
    void sample_status();
    // The fleet's coordinator and the drain's budgets from it (before the drain starts).
    void start_fleet();

    std::string config_path_;
    std::shared_ptr<const policy::Config> config_;
    // The configuration the process started with: what the listeners, connectors, spool
    // and metrics server run on until a restart (policy/config_reload's kRestart keys).
    std::shared_ptr<const policy::Config> started_;
    // What the DSN builder reads; swapped on reload (all on the io thread).
    std::shared_ptr<std::shared_ptr<const policy::Config>> config_holder_;
    // Destruction order matters (see run()): the spool and the intake outlive the
    // io_context, whose leftover coroutine frames may roll back a message on the way out.
    std::unique_ptr<spool::Spool> spool_;
    std::unique_ptr<DirectoryLoader> directory_;
    UnixMillis next_directory_poll_ms_ = 0;
    UnixMillis next_publish_ms_ = 0;
    std::map<std::string, std::string> published_; // meta last written by publish_state()
    std::unique_ptr<SpoolIntake> intake_;
    // The milters; outlives the io_context (the server's connections ask it for chains).
    std::unique_ptr<milter::MilterFilters> filters_;
    std::unique_ptr<boost::asio::io_context> io_ = std::make_unique<boost::asio::io_context>(1);
    std::unique_ptr<smtp::Server> server_;
    // The fleet's budgets, when fleet.redis is set; outlives drain_ (which uses them).
    std::unique_ptr<fleet::Coordinator> fleet_;
    fleet::NodeStatus fleet_status_; // what the next heartbeat publishes
    std::unique_ptr<drain::Drain> drain_;
    std::unique_ptr<http::HttpServer> http_;
    std::unique_ptr<StatusReporter> reporter_;
    std::unique_ptr<boost::asio::steady_timer> tick_timer_ =
        std::make_unique<boost::asio::steady_timer>(*io_);
    bool stopping_ = false;
    int exit_status_ = 0;
    UnixMillis started_ms_ = 0;
};

} // namespace spoold::daemon
