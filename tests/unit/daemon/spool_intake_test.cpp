#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <vector>

#include "common/clock.hpp"
#include "daemon/spool_intake.hpp"
#include "tests/support/temp_spool.hpp"

using namespace spoold;
using spoold::daemon::IntakeHooks;
using spoold::daemon::SpoolIntake;

namespace {

IntakeHooks hooks() {
    IntakeHooks h;
    h.check_recipient = [](const std::string&) { return smtp::RecipientVerdict::kAccept; };
    h.classify = [](const daemon::ClassifyInput&, UnixMillis) {
        return daemon::ClassDecision{0, "normal", 0};
    };
    return h;
}

// Receives and commits one message of `size` body bytes; true when it was committed.
// The spool calls back from its writer thread: wait for every callback.
bool receive(SpoolIntake& intake, std::size_t size) {
    auto msg = intake.begin();
    REQUIRE(msg);
    std::atomic<int> pending = 0;
    std::atomic<bool> ok = true;
    std::size_t sent = 0;
    while (sent < size) {
        const std::size_t n = std::min<std::size_t>(64 * 1024, size - sent);
        ++pending;
        (*msg)->append(std::string(n, 'x'), [&](Status st) {
            if (!st) {
                ok = false;
            }
            --pending;
        });
        sent += n;
    }
    smtp::MessageInfo info;
    info.mail_from = "a@remote.example";
    info.recipients.push_back(smtp::RecipientInfo{"b@example.com", "", 0});
    std::atomic<bool> committed = false;
    ++pending;
    (*msg)->commit(std::move(info), "Received: test\r\n", [&](Result<smtp::CommitInfo> r) {
        committed = r.has_value();
        --pending;
    });
    REQUIRE(spool::test::eventually([&] { return pending.load() == 0; }));
    return ok && committed;
}

} // namespace

TEST_CASE("admission refuses once the bytes written since the last sample use up the budget") {
    FakeClock clock;
    test::TempSpool spool(clock);
    SpoolIntake intake(spool.get(), hooks(), clock);
    CHECK(intake.admit());

    // Room for about 100 KiB until the next sample of the spool's size.
    intake.set_accepting(true, "", 100 * 1024);
    CHECK(intake.admit());
    REQUIRE(receive(intake, 60 * 1024));
    CHECK(intake.admit()); // 60 KiB + overhead of 100 KiB used
    REQUIRE(receive(intake, 60 * 1024));
    const auto refused = intake.admit();
    REQUIRE_FALSE(refused);
    CHECK(refused.error().kind == ErrorKind::kSpoolFull);
    CHECK(intake.accepted_total() == 2);

    // A staged (large) message counts as its chunks are written.
    intake.set_accepting(true, "", 300 * 1024);
    REQUIRE(receive(intake, 400 * 1024));
    CHECK_FALSE(intake.admit());

    // The next sample sees the space and grants a fresh budget.
    intake.set_accepting(true, "", 10 * 1024 * 1024);
    CHECK(intake.admit());
    // Above the watermark nothing is admitted, whatever the budget.
    intake.set_accepting(false, "spool at its watermark", 10 * 1024 * 1024);
    CHECK_FALSE(intake.admit());
}

TEST_CASE("the spool's arrival listener hears of each message the intake commits, after its "
          "commit, with the id it began with") {
    FakeClock clock;
    test::TempSpool spool(clock);
    std::mutex mutex;
    std::vector<QueueId> heard;
    spool->on_arrival([&](QueueId id) {
        const std::lock_guard lock(mutex);
        heard.push_back(id);
    });
    SpoolIntake intake(spool.get(), hooks(), clock);
    // A slow message begun first commits after a quick one: ids out of commit order, which
    // is why the drain must hear of the commit (Scheduler::arrived).
    auto slow = intake.begin();
    REQUIRE(slow);
    REQUIRE(receive(intake, 1024));
    smtp::MessageInfo info;
    info.mail_from = "a@remote.example";
    info.recipients.push_back(smtp::RecipientInfo{"c@example.com", "", 0});
    std::atomic<bool> done = false;
    (*slow)->commit(std::move(info), "Received: test\r\n", [&](Result<smtp::CommitInfo> r) {
        CHECK(r.has_value());
        done = true;
    });
    REQUIRE(spool::test::eventually([&] { return done.load(); }));
    spool->on_arrival({});
    const std::lock_guard lock(mutex);
    REQUIRE(heard.size() == 2);
    CHECK(heard[1] == (*slow)->id());
    CHECK(heard[0] > heard[1]);
    CHECK(spool.contains(heard[0]));
    CHECK(spool.contains(heard[1]));
}
