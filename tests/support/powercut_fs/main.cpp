// powercut_fs: a FUSE filesystem that can lose power. Usage:
//   powercut_fs BACKING MOUNTPOINT [--seed N] [--sector BYTES] [--debug]
// Mounts the volume kept in BACKING at MOUNTPOINT, prints `event=mounted` and serves
// requests on one thread until a signal:
//   SIGUSR1  power cut: nothing more is served, the mount goes, everything not fsynced
//            is thrown away, the durable state is saved; prints `event=cut ...`, exits 0.
//   SIGUSR2  the same, keeping a random part of each file's unsynced writes (torn and
//            reordered at --sector boundaries, 512 by default), drawn from --seed.
//   SIGTERM, SIGINT, SIGHUP, or an unmount from outside: a clean unmount; everything is
//            durable. Prints `event=stopped`, exits 0.
// The next boot is a new process on the same BACKING. Exit status 1: usage or mount error.

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <poll.h>
#include <string>
#include <sys/signalfd.h>
#include <unistd.h>
#include <vector>

#include "tests/support/powercut_fs/fuse_ops.hpp"

namespace {

constexpr std::uint64_t kDefaultSector = 512;

struct Options {
    std::string backing;
    std::string mountpoint;
    std::uint64_t seed = 1;
    std::uint64_t sector = kDefaultSector;
    bool debug = false;
};

std::optional<Options> parse(int argc, char** argv) {
    Options o;
    std::vector<std::string> positional;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if ((a == "--seed" || a == "--sector") && i + 1 < argc) {
            const std::uint64_t v = std::strtoull(argv[++i], nullptr, 10);
            (a == "--seed" ? o.seed : o.sector) = v;
        } else if (a == "--debug") {
            o.debug = true;
        } else {
            positional.push_back(a);
        }
    }
    if (positional.size() != 2 || o.sector == 0) {
        return std::nullopt;
    }
    o.backing = positional[0];
    o.mountpoint = positional[1];
    return o;
}

enum class Ending { kCut, kTornCut, kClean };

// Serves requests until a signal or an unmount. Signals arrive through a signalfd, so
// a cut cannot slip in between a check and a blocking read.
Ending serve(fuse_session* se, int sigfd) {
    fuse_buf buf{};
    Ending ending = Ending::kClean;
    for (;;) {
        pollfd fds[2] = {{sigfd, POLLIN, 0}, {fuse_session_fd(se), POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            std::perror("poll");
            break;
        }
        if ((fds[0].revents & POLLIN) != 0) { // first: a cut serves nothing more
            signalfd_siginfo si{};
            if (::read(sigfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
                ending = si.ssi_signo == SIGUSR1   ? Ending::kCut
                         : si.ssi_signo == SIGUSR2 ? Ending::kTornCut
                                                   : Ending::kClean;
                break;
            }
        }
        if (fds[1].revents != 0) {
            const int res = fuse_session_receive_buf(se, &buf);
            if (res == -EINTR || res == -EAGAIN) {
                continue;
            }
            if (res <= 0) {
                break; // unmounted from outside (or the connection was aborted)
            }
            fuse_session_process_buf(se, &buf);
            if (fuse_session_exited(se) != 0) {
                break;
            }
        }
    }
    std::free(buf.mem);
    return ending;
}

} // namespace

int main(int argc, char** argv) {
    const auto opts = parse(argc, argv);
    if (!opts) {
        std::fprintf(stderr, "usage: powercut_fs BACKING MOUNTPOINT [--seed N] "
                             "[--sector BYTES] [--debug]\n");
        return 1;
    }
    std::string error;
    auto volume = powercut::Volume::open(opts->backing, error);
    if (!volume) {
        std::fprintf(stderr, "powercut_fs: %s\n", error.c_str());
        return 1;
    }
    sigset_t mask;
    sigemptyset(&mask);
    for (const int sig : {SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGHUP}) {
        sigaddset(&mask, sig);
    }
    if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) {
        std::perror("sigprocmask");
        return 1;
    }
    const int sigfd = ::signalfd(-1, &mask, SFD_CLOEXEC);
    if (sigfd < 0) {
        std::perror("signalfd");
        return 1;
    }

    std::vector<std::string> arg_text = {"powercut_fs", "-o",
                                         "default_permissions,fsname=powercut,subtype=powercut"};
    if (opts->debug) {
        arg_text.emplace_back("-d");
    }
    std::vector<char*> arg_ptrs;
    for (auto& a : arg_text) {
        arg_ptrs.push_back(a.data());
    }
    fuse_args args = FUSE_ARGS_INIT(static_cast<int>(arg_ptrs.size()), arg_ptrs.data());
    const fuse_lowlevel_ops ops = powercut::make_ops();
    powercut::Mount mount{*volume, {}, 1};
    fuse_session* se = fuse_session_new(&args, &ops, sizeof ops, &mount);
    if (se == nullptr) {
        std::fprintf(stderr, "powercut_fs: fuse_session_new failed\n");
        return 1;
    }
    if (fuse_session_mount(se, opts->mountpoint.c_str()) != 0) {
        std::fprintf(stderr, "powercut_fs: cannot mount %s\n", opts->mountpoint.c_str());
        fuse_session_destroy(se);
        return 1;
    }
    std::printf("event=mounted mountpoint=%s\n", opts->mountpoint.c_str());
    std::fflush(stdout);

    const Ending ending = serve(se, sigfd);
    // Unmount first: from here the kernel can send nothing more, and whatever it still
    // held (dirty pages of a shared mapping) is gone with the power.
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    fuse_opt_free_args(&args);

    if (ending == Ending::kClean) {
        if (const int err = volume->shutdown(); err != 0) {
            std::fprintf(stderr, "powercut_fs: saving the volume: %s\n", std::strerror(err));
            return 1;
        }
        std::printf("event=stopped\n");
        std::fflush(stdout);
        return 0;
    }
    powercut::CutStats stats;
    const std::optional<std::uint64_t> torn =
        ending == Ending::kTornCut ? std::optional<std::uint64_t>(opts->seed) : std::nullopt;
    if (const int err = volume->cut(torn, opts->sector, stats); err != 0) {
        std::fprintf(stderr, "powercut_fs: cutting the volume: %s\n", std::strerror(err));
        return 1;
    }
    std::printf("event=cut torn=%d seed=%llu files=%llu pieces_dropped=%llu pieces_kept=%llu "
                "entries_dropped=%llu inodes_dropped=%llu\n",
                torn ? 1 : 0, static_cast<unsigned long long>(opts->seed),
                static_cast<unsigned long long>(stats.files_cut),
                static_cast<unsigned long long>(stats.pieces_dropped),
                static_cast<unsigned long long>(stats.pieces_kept),
                static_cast<unsigned long long>(stats.entries_dropped),
                static_cast<unsigned long long>(stats.inodes_dropped));
    std::fflush(stdout);
    return 0;
}
