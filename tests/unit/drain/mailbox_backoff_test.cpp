#include <doctest/doctest.h>

#include <algorithm>

#include "drain/mailbox_backoff.hpp"

using namespace spoold;
using namespace spoold::drain;
using namespace std::chrono_literals;

namespace {

constexpr std::int64_t kMin = 10'000;
constexpr std::int64_t kMax = 80'000;

MailboxBackoffOptions options() { return MailboxBackoffOptions{10s, 80s}; }

const char* const kShard = "451 4.3.0 <user17@example.com> shard 3 unavailable (session 5F2A9)";

} // namespace

TEST_CASE("trouble keys keep code and status and strip ids, numbers and local parts") {
    CHECK(trouble_key(kShard) == "451 4.3.0 <@example.com> shard # unavailable (session #)");
    CHECK(trouble_key("451 4.3.0 <bob@Example.com> shard 12 unavailable (session 77B01)") ==
          trouble_key(kShard));
    CHECK(trouble_key("451 4.3.0 <bob@example.net> shard 12 unavailable (session 1)") !=
          trouble_key(kShard)); // another domain
    CHECK(trouble_key("452 4.3.0 <bob@example.com> shard 12 unavailable (session 1)") !=
          trouble_key(kShard)); // another code
    CHECK(trouble_key("451 4.2.0 Internal error occurred. Refer to server log for more "
                      "information. [2026-11-30 19:40:01]") ==
          "451 4.2.0 internal error occurred. refer to server log for more information. [# "
          "#:#:#]");
    CHECK(trouble_key("421 closing") == "421 closing");
    CHECK(trouble_key("") == "");
}

TEST_CASE("mailboxes failing with the same reply wait behind one probe with jittered backoff") {
    FakeClock clock;
    MailboxBackoff b(options(), clock, 7);
    const UnixMillis t0 = clock.now_ms();
    const UnixMillis until = b.park(0, "user17@example.com", kShard, QueueId{1});
    const UnixMillis until2 =
        b.park(0, "bob@example.com", "451 4.3.0 <bob@example.com> shard 4 unavailable (session 1)",
               QueueId{2});
    CHECK(b.groups() == 1);
    CHECK(b.parked() == 2);
    // Parked a step beyond the first probe, which comes after half to a whole step.
    CHECK(until == until2);
    CHECK(until >= t0 + kMin / 2 + kMin);
    CHECK(until <= t0 + kMin + kMin);
    // New mail for those mailboxes waits without a delivery; other mailboxes do not.
    CHECK(b.waiting(0, "bob@example.com", QueueId{3}) == until);
    CHECK_FALSE(b.waiting(0, "alice@example.com", QueueId{4}));
    CHECK_FALSE(b.waiting(1, "bob@example.com", QueueId{4})); // another store
    CHECK(b.parked() == 3);

    CHECK(b.due_probes().empty());
    clock.set_ms(until - kMin);
    std::vector<QueueId> probes = b.due_probes();
    REQUIRE(probes.size() == 1);
    CHECK(probes[0] == QueueId{1}); // the oldest
    CHECK(b.due_probes().empty());  // one probe at a time
    // The probe itself goes through; it fails: the group backs off a step further.
    CHECK_FALSE(b.waiting(0, "user17@example.com", QueueId{1}));
    const UnixMillis failed_at = clock.now_ms();
    const UnixMillis again = b.park(0, "user17@example.com", kShard, QueueId{1});
    CHECK(again >= failed_at + kMin + 2 * kMin);
    CHECK(again <= failed_at + 2 * kMin + 2 * kMin);
    CHECK(b.waiting(0, "user17@example.com", QueueId{1}) == again); // a member again

    // The next probe is answered: every other message of the group is released at once.
    clock.set_ms(again - 2 * kMin);
    probes = b.due_probes();
    REQUIRE(probes.size() == 1);
    const std::vector<QueueId> released = b.answered(0, "user17@example.com", probes[0]);
    std::vector<std::uint64_t> ids;
    for (const QueueId id : released) {
        ids.push_back(id.value);
    }
    std::sort(ids.begin(), ids.end());
    CHECK(ids == std::vector<std::uint64_t>{2, 3});
    CHECK(b.groups() == 0);
    CHECK(b.parked() == 0);
    CHECK_FALSE(b.waiting(0, "bob@example.com", QueueId{5}));
}

TEST_CASE("a group's backoff doubles up to retry_max and a recovered store probes at once") {
    FakeClock clock;
    MailboxBackoff b(options(), clock, 3);
    (void)b.park(0, "a@example.com", kShard, QueueId{1});
    (void)b.park(0, "b@example.com", kShard, QueueId{2});
    std::int64_t step = kMin;
    for (int round = 0; round < 6; ++round) {
        clock.advance_ms(kMax); // past any probe time
        const auto probes = b.due_probes();
        REQUIRE(probes.size() == 1);
        const UnixMillis now = clock.now_ms();
        const std::string who = probes[0] == QueueId{1} ? "a@example.com" : "b@example.com";
        step = std::min(step * 2, kMax);
        const UnixMillis until = b.park(0, who, kShard, probes[0]);
        CHECK(until >= now + step / 2 + step);
        CHECK(until <= now + step + step);
    }
    CHECK(b.due_probes().empty());
    b.probe_now(1); // another store's recovery changes nothing here
    CHECK(b.due_probes().empty());
    b.probe_now(0);
    CHECK(b.due_probes().size() == 1);
}

TEST_CASE("an answered mailbox outside any group releases nothing; empty groups are forgotten") {
    FakeClock clock;
    MailboxBackoff b(options(), clock, 5);
    CHECK(b.answered(0, "a@example.com", QueueId{1}).empty());
    (void)b.park(0, "a@example.com", kShard, QueueId{1});
    clock.advance_ms(kMin);
    const auto probes = b.due_probes();
    REQUIRE(probes.size() == 1);
    // The probe message went away (delivered elsewhere, expired): nothing else is parked.
    clock.advance_ms(kMin);
    CHECK(b.due_probes().empty());
    CHECK(b.groups() == 0);
}

TEST_CASE("waits() answers as waiting() would and parks nothing: the probe message does not wait") {
    FakeClock clock;
    MailboxBackoff b(options(), clock, 7);
    const UnixMillis until = b.park(0, "user17@example.com", kShard, QueueId{1});
    CHECK(b.waits(0, "user17@example.com", QueueId{2}));
    CHECK_FALSE(b.waits(0, "alice@example.com", QueueId{2}));  // in no group
    CHECK_FALSE(b.waits(1, "user17@example.com", QueueId{2})); // another store
    CHECK(b.parked() == 1);                                    // asking parked nothing

    clock.set_ms(until);
    const std::vector<QueueId> probes = b.due_probes();
    REQUIRE(probes == std::vector<QueueId>{QueueId{1}});
    // The probe goes to the store; every other message of the group still waits.
    CHECK_FALSE(b.waits(0, "user17@example.com", QueueId{1}));
    CHECK_FALSE(b.waiting(0, "user17@example.com", QueueId{1}));
    CHECK(b.waits(0, "user17@example.com", QueueId{2}));
    CHECK(b.parked() == 0);
}

TEST_CASE("knows() tells a known group's trouble by its reply, per store, until it is answered") {
    FakeClock clock;
    MailboxBackoff b(options(), clock, 11);
    const char* const other_user = "451 4.3.0 <carol@example.com> shard 9 unavailable (session 2)";
    CHECK_FALSE(b.knows(0, kShard)); // nothing learnt yet
    (void)b.park(0, "user17@example.com", kShard, QueueId{1});
    CHECK(b.knows(0, other_user));       // a mailbox not in the group yet, the same trouble
    CHECK_FALSE(b.knows(1, other_user)); // another store
    CHECK_FALSE(b.knows(0, "451 4.2.0 Internal error occurred"));
    CHECK(b.groups() == 1);
    CHECK(b.parked() == 1); // asking parks nothing
    (void)b.answered(0, "user17@example.com", QueueId{1});
    CHECK_FALSE(b.knows(0, kShard));
}
