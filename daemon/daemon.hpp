// The running daemon: owns the spool, the directory, the intake, the SMTP server and
// the drain, and the timers that tie them together (admission, directory polling,
// publishing drain state for spoolctl). Decisions belong to the components.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>
#include <sys/stat.h>

#include "daemon/spool_intake.hpp"
#include "policy/classifier.hpp"
#include "policy/config.hpp"
#include "policy/directory_file.hpp"
#include "spool/directory_store.hpp"
#include "spool/spool.hpp"

namespace spoold::smtp {
class Server;
}
namespace spoold::drain {
class Drain;
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
    void load_directory(bool at_start);
    Result<IntakeHooks> make_hooks(const std::shared_ptr<const policy::Config>& config);
    void reload();
    void shutdown();
    void tick();
    void schedule_tick();
    void update_admission();
    void publish_state();

    std::string config_path_;
    std::shared_ptr<const policy::Config> config_;
    boost::asio::io_context io_{1};
    std::unique_ptr<spool::Spool> spool_;
    std::unique_ptr<spool::DirectoryStore> directory_;
    bool directory_loaded_ = false;
    struct stat directory_stat_ {};
    UnixMillis next_directory_poll_ms_ = 0;
    UnixMillis next_publish_ms_ = 0;
    std::unique_ptr<SpoolIntake> intake_;
    std::unique_ptr<smtp::Server> server_;
    std::unique_ptr<drain::Drain> drain_;
    boost::asio::steady_timer tick_timer_{io_};
    bool stopping_ = false;
    int exit_status_ = 0;
    UnixMillis started_ms_ = 0;
};

} // namespace spoold::daemon
