// spoold's main(): command line, configuration, and the wiring of spool, intake,
// SMTP listener and drain on one io_context; signals (HUP reload, TERM/INT stop).
// The components do the work; this file only connects them and owns their lifetimes.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <cstring>
#include <string>
#include <sys/resource.h>

#include "common/log.hpp"
#include "common/version.hpp"
#include "daemon/daemon.hpp"
#include "policy/config.hpp"
#include "policy/config_reload.hpp"

namespace {

constexpr const char* kDefaultConfig = "/etc/spoold/spoold.yaml";

void usage(std::FILE* out) {
    std::fprintf(out,
                 "usage: spoold [--config FILE]      run the daemon (default %s)\n"
                 "       spoold --check-config FILE  validate a configuration and exit\n"
                 "       spoold --version\n",
                 kDefaultConfig);
}

// 5,000 idle sessions need more descriptors than the usual soft limit of 1024.
void raise_fd_limit() {
    rlimit lim{};
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
}

// --check-config's note: the keys a SIGHUP does not apply, as the reload warning names them.
std::string restart_note() {
    constexpr std::size_t kWidth = 92;
    std::string out = "note: SIGHUP applies every key but these, which take effect at the next "
                      "start:\n";
    std::string line;
    std::string notes;
    for (const auto& rule : spoold::policy::reload_rules()) {
        if (rule.on_reload != spoold::policy::OnReload::kRestart) {
            continue;
        }
        const std::string key(rule.key);
        if (!line.empty() && line.size() + key.size() + 2 > kWidth) {
            out += "  " + line + ",\n";
            line.clear();
        }
        line += (line.empty() ? "" : ", ") + key;
        if (!rule.note.empty()) {
            notes += "  (" + key + ": " + std::string(rule.note) + ")\n";
        }
    }
    return out + "  " + line + "\n" + notes;
}

} // namespace

int main(int argc, char** argv) {
    std::string config_path = kDefaultConfig;
    bool check_only = false;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if ((arg == "--config" || arg == "-c" || arg == "--check-config") && i + 1 < argc) {
            check_only = check_only || arg == "--check-config";
            config_path = argv[++i];
        } else if (arg == "--help" || arg == "-h") {
            usage(stdout);
            return 0;
        } else if (arg == "--version") {
            std::printf("spoold %s\n", spoold::kVersion);
            return 0;
        } else {
            std::fprintf(stderr, "spoold: unknown argument '%s'\n", arg.c_str());
            usage(stderr);
            return 2;
        }
    }

    auto config = spoold::policy::load_config(config_path);
    if (!config) {
        std::fprintf(stderr, "spoold: %s\n", config.error().message.c_str());
        return 1;
    }
    if (check_only) {
        std::printf("%s: ok\n%s", config_path.c_str(), restart_note().c_str());
        return 0;
    }
    raise_fd_limit();
    spoold::daemon::Daemon daemon(config_path, *config);
    return daemon.run();
}
