#include <doctest/doctest.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <poll.h>
#include <random>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "spool_test_support.hpp"

namespace spoold::spool {
namespace {

constexpr int kKills = 25;
constexpr int kChildThreads = 6;
constexpr std::size_t kIdHexLength = 16;

std::uint64_t splitmix(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31U);
}

// The body is a function of the id, so the parent can check it without the child telling.
std::string body_for(QueueId id) {
    std::uint64_t s = id.value;
    const std::size_t size = 64 + splitmix(s) % 20'000;
    std::string body(size, '\0');
    for (char& c : body) {
        c = static_cast<char>(splitmix(s));
    }
    return body;
}

SpoolOptions crash_options(const std::string& path) {
    SpoolOptions o;
    o.path = path;
    o.max_size_bytes = 1ULL << 30U;
    o.max_batch = 64;
    return o;
}

// Runs in the forked child until SIGKILL: several producers, each acked id to the pipe.
[[noreturn]] void child_main(const std::string& path, int fd) {
    auto spool = Spool::open(crash_options(path));
    if (!spool) {
        _exit(3);
    }
    std::vector<std::thread> producers;
    for (int t = 0; t < kChildThreads; ++t) {
        producers.emplace_back([&spool, fd, t] {
            for (std::uint32_t n = 0;; ++n) {
                NewMessage m = test::make_message(
                    **spool, static_cast<ClassId>((n + static_cast<unsigned>(t)) % 4), 1 + n % 3,
                    {});
                m.body = body_for(m.envelope.id);
                const QueueId id = m.envelope.id;
                auto st =
                    (*spool)->wait([&](Done d) { (*spool)->enqueue(std::move(m), std::move(d)); });
                if (!st) {
                    _exit(4);
                }
                char line[kIdHexLength + 2];
                std::snprintf(line, sizeof line, "%016llx\n",
                              static_cast<unsigned long long>(id.value));
                // One write below PIPE_BUF is atomic: the parent never sees half a line.
                if (write(fd, line, kIdHexLength + 1) != static_cast<ssize_t>(kIdHexLength + 1)) {
                    _exit(5);
                }
            }
        });
    }
    for (auto& p : producers) {
        p.join();
    }
    _exit(0);
}

void parse_lines(std::string& pending, std::vector<QueueId>& out) {
    std::size_t pos = 0;
    while (pending.size() - pos >= kIdHexLength + 1) {
        const std::string hex = pending.substr(pos, kIdHexLength);
        REQUIRE(pending[pos + kIdHexLength] == '\n');
        out.push_back(QueueId{std::stoull(hex, nullptr, 16)});
        pos += kIdHexLength + 1;
    }
    pending.erase(0, pos);
}

} // namespace

TEST_CASE("crash: every acknowledged message survives SIGKILL at random moments" *
          doctest::skip()) {
    test::TempDir dir;
    const std::string path = dir.sub("spool");
    std::mt19937 rng(std::random_device{}());
    std::size_t total_acked = 0;
    for (int round = 0; round < kKills; ++round) {
        int fds[2];
        REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
        const pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_main(path, fds[1]);
        }
        close(fds[1]);
        std::vector<QueueId> acked;
        std::string pending;
        const auto kill_at =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(20 + rng() % 400);
        bool killed = false;
        for (;;) {
            const auto now = std::chrono::steady_clock::now();
            if (!killed && now >= kill_at) {
                REQUIRE(kill(pid, SIGKILL) == 0);
                killed = true;
            }
            pollfd p{fds[0], POLLIN, 0};
            const int wait_ms =
                killed ? 1000
                       : static_cast<int>(
                             std::chrono::duration_cast<std::chrono::milliseconds>(kill_at - now)
                                 .count()) +
                             1;
            const int ready = poll(&p, 1, wait_ms);
            REQUIRE(ready >= 0);
            if (ready == 0) {
                continue;
            }
            char buf[4096];
            const ssize_t n = read(fds[0], buf, sizeof buf);
            REQUIRE(n >= 0);
            if (n == 0) {
                break; // the child is gone and the pipe is drained
            }
            pending.append(buf, static_cast<std::size_t>(n));
            parse_lines(pending, acked);
        }
        close(fds[0]);
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        REQUIRE_MESSAGE(WIFSIGNALED(status), "child exited by itself with status " << status);
        CHECK(pending.empty());
        total_acked += acked.size();

        auto spool = test::open_spool(crash_options(path));
        for (const QueueId id : acked) {
            auto env = spool->get(id);
            REQUIRE(env.has_value());
            REQUIRE_MESSAGE(env->has_value(), "acknowledged message lost: " << id.text());
            CHECK(std::hash<std::string>{}(test::read_whole_body(*spool, id)) ==
                  std::hash<std::string>{}(body_for(id)));
        }
        test::check_consistent(*spool);
        // Empty the spool (acked or committed-but-unacked alike) so each round starts small
        // and the deletes churn the freelist across kills.
        for (const Envelope& e : test::all_envelopes(*spool)) {
            REQUIRE(spool->wait([&](Done d) { spool->remove(e.id, std::move(d)); }));
        }
        CHECK(spool->counters()->total_messages() == 0);
    }
    MESSAGE("acknowledged and verified: " << total_acked);
    CHECK(total_acked > 100);
}

} // namespace spoold::spool
