// The power-cut filesystem through a real FUSE mount: the syscalls spoold's spool (LMDB)
// and Maildir connector make, a cut, and a remount by a new powercut_fs process.
#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <optional>
#include <poll.h>
#include <string>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>

#include "spool/lmdb/lmdb.hpp"
#include "tests/unit/spool/spool_test_support.hpp"

namespace {

using spoold::spool::test::TempDir;
using Clock = std::chrono::steady_clock;

constexpr long kFuseSuperMagic = 0x65735546;
constexpr auto kDeadline = std::chrono::seconds(20);
constexpr std::size_t kPage = 4096;

// One boot of the filesystem: a powercut_fs process serving `mountpoint` from `backing`.
class PowercutMount {
public:
    PowercutMount(const std::string& backing, const std::string& mountpoint) {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        pid_ = ::fork();
        REQUIRE(pid_ >= 0);
        if (pid_ == 0) {
            ::dup2(fds[1], STDOUT_FILENO);
            ::execl(POWERCUT_FS_BINARY, POWERCUT_FS_BINARY, backing.c_str(), mountpoint.c_str(),
                    "--seed", "7", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        ::close(fds[1]);
        out_ = fds[0];
        REQUIRE_MESSAGE(read_until("event=mounted"), output_);
        const auto deadline = Clock::now() + kDeadline;
        struct statfs st {};
        while (::statfs(mountpoint.c_str(), &st) != 0 || st.f_type != kFuseSuperMagic) {
            REQUIRE_MESSAGE(Clock::now() < deadline, "the mount did not appear");
            ::usleep(10'000); // polling a state with a deadline
        }
    }
    ~PowercutMount() {
        if (pid_ > 0) {
            finish(SIGTERM);
        }
    }
    PowercutMount(const PowercutMount&) = delete;
    PowercutMount& operator=(const PowercutMount&) = delete;

    // Cuts the power; returns what powercut_fs printed (its event=cut line).
    std::string cut(bool torn = false) { return finish(torn ? SIGUSR2 : SIGUSR1); }
    std::string stop() { return finish(SIGTERM); }

private:
    bool read_until(const std::string& needle) {
        const auto deadline = Clock::now() + kDeadline;
        while (output_.find(needle) == std::string::npos) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            pollfd p{out_, POLLIN, 0};
            if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) {
                return false;
            }
            char buf[512];
            const ssize_t n = ::read(out_, buf, sizeof buf);
            if (n <= 0) {
                return output_.find(needle) != std::string::npos;
            }
            output_.append(buf, static_cast<std::size_t>(n));
        }
        return true;
    }

    std::string finish(int sig) {
        ::kill(pid_, sig);
        const std::string done = sig == SIGTERM ? "event=stopped" : "event=cut";
        const bool ended = read_until(done);
        int status = 0;
        ::waitpid(std::exchange(pid_, -1), &status, 0);
        ::close(out_);
        CHECK_MESSAGE(ended, output_);
        CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
        return output_;
    }

    pid_t pid_ = -1;
    int out_ = -1;
    std::string output_;
};

struct Layout {
    TempDir dir;
    std::string backing = dir.sub("backing");
    std::string mnt = dir.sub("mnt");
    Layout() {
        REQUIRE(::mkdir(backing.c_str(), 0700) == 0);
        REQUIRE(::mkdir(mnt.c_str(), 0755) == 0);
    }
    std::string at(const std::string& name) const { return mnt + "/" + name; }
};

void fsync_path(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    CHECK(::fsync(fd) == 0);
    ::close(fd);
}

void write_file(const std::string& path, const std::string& text, bool fsync_it,
                int flags = O_CREAT | O_TRUNC) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | flags, 0644);
    REQUIRE_MESSAGE(fd >= 0, path << ": " << std::strerror(errno));
    REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    if (fsync_it) {
        CHECK(::fsync(fd) == 0);
    }
    ::close(fd);
}

std::optional<std::string> read_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return std::nullopt;
    }
    std::string out;
    char buf[4096];
    ssize_t n = 0;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) {
        out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return out;
}

TEST_CASE("through the mount: data written without fsync is gone after a cut, fsynced data "
          "stays") {
    Layout l;
    {
        PowercutMount m(l.backing, l.mnt);
        write_file(l.at("synced"), "kept", true);
        write_file(l.at("unsynced"), "lost", false);
        fsync_path(l.mnt); // both names are durable from here
        write_file(l.at("synced"), " and more", false, O_APPEND);
        CHECK(read_file(l.at("synced")) == "kept and more");
        const std::string said = m.cut();
        CHECK(said.find("event=cut torn=0") != std::string::npos);
    }
    PowercutMount m(l.backing, l.mnt);
    CHECK(read_file(l.at("synced")) == "kept");
    CHECK(read_file(l.at("unsynced")) == "");
}

TEST_CASE("through the mount: a file made in tmp/ and renamed into new/ is gone after a cut "
          "unless new/ was fsynced (the Maildir protocol)") {
    Layout l;
    {
        PowercutMount m(l.backing, l.mnt);
        REQUIRE(::mkdir(l.at("tmp").c_str(), 0700) == 0);
        REQUIRE(::mkdir(l.at("new").c_str(), 0700) == 0);
        fsync_path(l.mnt);
        write_file(l.at("tmp/a"), "message a", true);
        REQUIRE(::rename(l.at("tmp/a").c_str(), l.at("new/a").c_str()) == 0);
        const std::string before_b = m.cut();
        CHECK(before_b.find("entries_dropped=1") != std::string::npos);
    }
    {
        PowercutMount m(l.backing, l.mnt);
        CHECK_FALSE(read_file(l.at("new/a")).has_value());
        CHECK_FALSE(read_file(l.at("tmp/a")).has_value());
        write_file(l.at("tmp/b"), "message b", true);
        REQUIRE(::rename(l.at("tmp/b").c_str(), l.at("new/b").c_str()) == 0);
        fsync_path(l.at("new"));
        m.cut();
    }
    PowercutMount m(l.backing, l.mnt);
    CHECK(read_file(l.at("new/b")) == "message b");
    CHECK_FALSE(read_file(l.at("tmp/b")).has_value());
}

TEST_CASE("through the mount: a clean stop keeps everything, fsynced or not") {
    Layout l;
    {
        PowercutMount m(l.backing, l.mnt);
        write_file(l.at("f"), "never fsynced", false);
        CHECK(m.stop().find("event=stopped") != std::string::npos);
    }
    PowercutMount m(l.backing, l.mnt);
    CHECK(read_file(l.at("f")) == "never fsynced");
}

TEST_CASE("through the mount: a shared read-only mapping sees every pwrite at once, as "
          "LMDB's reads need") {
    Layout l;
    PowercutMount m(l.backing, l.mnt);
    const std::string path = l.at("data");
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    fsync_path(l.mnt);
    const std::string first(2 * kPage, 'x');
    REQUIRE(::pwrite(fd, first.data(), first.size(), 0) == static_cast<ssize_t>(first.size()));
    void* map = ::mmap(nullptr, 2 * kPage, PROT_READ, MAP_SHARED, fd, 0);
    REQUIRE(map != MAP_FAILED);
    const auto* bytes = static_cast<const char*>(map);
    CHECK(std::string(bytes, 2 * kPage) == first);
    const int meta = ::open(path.c_str(), O_WRONLY | O_DSYNC | O_CLOEXEC); // as LMDB's meta fd
    REQUIRE(meta >= 0);
    REQUIRE(::pwrite(meta, "meta", 4, kPage + 16) == 4);
    CHECK(std::string(bytes + kPage + 16, 4) == "meta");
    CHECK(std::string(bytes, 4) == "xxxx");
    ::munmap(map, 2 * kPage);
    ::close(meta);
    ::close(fd);
    m.cut();
    // The O_DSYNC write was durable when it returned, and so was everything written to
    // the file before it (Linux follows an O_DSYNC write with an fsync of the file).
    PowercutMount again(l.backing, l.mnt);
    std::string expected = first;
    expected.replace(kPage + 16, 4, "meta");
    CHECK(read_file(path) == expected);
}

// Runs `body` in a child process and returns its exit status (0 = its checks passed).
template <typename Body> int in_child(Body body) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        ::_exit(body() ? 0 : 1);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool put(const std::string& path, const std::string& key, const std::string& value) {
    namespace lmdb = spoold::spool::lmdb;
    auto env = lmdb::Env::open(lmdb::EnvOptions{.path = path, .map_size = 64 << 20});
    if (!env) {
        return false;
    }
    auto table = (*env)->table("t", true);
    auto txn = (*env)->begin_write();
    return table && txn && txn->put(*table, key, value) && txn->commit();
}

TEST_CASE("through the mount: an LMDB environment shared by two processes keeps every "
          "commit through a cut, from the very first one") {
    namespace lmdb = spoold::spool::lmdb;
    Layout l;
    const std::string spool = l.at("spool");
    {
        PowercutMount m(l.backing, l.mnt);
        // A writer that stays alive holding the environment (and its lock file) open,
        // killed just before the cut, as the harness kills spoold.
        int ready[2];
        REQUIRE(::pipe(ready) == 0);
        const pid_t holder = ::fork();
        REQUIRE(holder >= 0);
        if (holder == 0) {
            const bool ok = put(spool, "k1", "first commit of a fresh environment");
            auto env = lmdb::Env::open(lmdb::EnvOptions{.path = spool, .map_size = 64 << 20});
            (void)!::write(ready[1], ok && env ? "1" : "0", 1);
            ::pause();
            ::_exit(0);
        }
        char said = 0;
        REQUIRE(::read(ready[0], &said, 1) == 1);
        CHECK(said == '1');
        CHECK(in_child([&] { return put(spool, "k2", "from a second process"); }) == 0);
        ::kill(holder, SIGKILL);
        ::waitpid(holder, nullptr, 0);
        m.cut();
    }
    PowercutMount m(l.backing, l.mnt);
    auto env = lmdb::Env::open(lmdb::EnvOptions{.path = spool, .map_size = 64 << 20});
    REQUIRE_MESSAGE(env, env.error().describe());
    auto table = (*env)->table("t", false);
    REQUIRE_MESSAGE(table, table.error().describe());
    auto txn = (*env)->begin_read();
    REQUIRE(txn);
    CHECK(txn->get(*table, "k1").value() == "first commit of a fresh environment");
    CHECK(txn->get(*table, "k2").value() == "from a second process");
}

} // namespace
