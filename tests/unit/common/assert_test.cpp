#include <doctest/doctest.h>

#include <csignal>
#include <string>
#include <sys/wait.h>
#include <unistd.h>

#include "common/assert.hpp"

namespace {

struct Outcome {
    int status = 0;
    std::string stderr_text;
};

// Runs `fn` in a child process with stderr on a pipe; returns how it ended and what it said.
template <typename Fn> Outcome in_child(Fn fn) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        fn();
        _exit(0);
    }
    close(fds[1]);
    Outcome out;
    char buf[4096];
    for (;;) {
        const ssize_t n = read(fds[0], buf, sizeof buf);
        if (n <= 0) {
            break;
        }
        out.stderr_text.append(buf, static_cast<std::size_t>(n));
    }
    close(fds[0]);
    REQUIRE(waitpid(pid, &out.status, 0) == pid);
    return out;
}

} // namespace

TEST_CASE("SPOOLD_ASSERT logs the broken invariant and aborts, in every build type") {
    const Outcome broken = in_child([] {
        const int queued = 3;
        SPOOLD_ASSERT(queued == 2, "the queue lost an op");
    });
    REQUIRE(WIFSIGNALED(broken.status));
    CHECK(WTERMSIG(broken.status) == SIGABRT);
    CHECK(broken.stderr_text.find("event=assert_failed") != std::string::npos);
    CHECK(broken.stderr_text.find("\"queued == 2\"") != std::string::npos);
    CHECK(broken.stderr_text.find("assert_test.cpp:") != std::string::npos);
    CHECK(broken.stderr_text.find("\"the queue lost an op\"") != std::string::npos);

    const Outcome holds = in_child([] { SPOOLD_ASSERT(1 + 1 == 2, "arithmetic"); });
    REQUIRE(WIFEXITED(holds.status));
    CHECK(WEXITSTATUS(holds.status) == 0);
    CHECK(holds.stderr_text.empty());
}
