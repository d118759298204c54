#include <doctest/doctest.h>

#include "tools/spoolctl/filter.hpp"

using namespace spoold;
using namespace spoold::spoolctl;

namespace {

constexpr UnixMillis kNow = 1'800'000'000'000;
constexpr std::int64_t kHour = 3'600'000;

spool::Envelope message(std::string from, std::vector<std::string> rcpts, std::int64_t age_ms,
                        std::uint64_t size = 1000, spool::ClassId klass = 1) {
    spool::Envelope env;
    env.id = QueueId{42};
    env.mail_from = std::move(from);
    env.arrival_ms = kNow - age_ms;
    env.size = size;
    env.klass = klass;
    for (auto& r : rcpts) {
        spool::Recipient rc;
        rc.address = std::move(r);
        env.recipients.push_back(rc);
    }
    return env;
}

} // namespace

TEST_CASE("address patterns match a whole address or any address at a domain") {
    const auto exact = AddressPattern::parse("Bob@Example.org");
    REQUIRE(exact);
    CHECK(exact->matches("bob@example.ORG"));
    CHECK_FALSE(exact->matches("bob@example.org.evil"));
    CHECK_FALSE(exact->matches("xbob@example.org"));

    for (const char* text : {"@example.org", "example.org", "<@example.org>"}) {
        const auto dom = AddressPattern::parse(text);
        REQUIRE(dom);
        CHECK(dom->matches("anyone@EXAMPLE.org"));
        CHECK_FALSE(dom->matches("anyone@sub.example.org"));
        CHECK_FALSE(dom->matches("example.org"));
    }
    const auto null = AddressPattern::parse("<>");
    REQUIRE(null);
    CHECK(null->matches(""));
    CHECK_FALSE(null->matches("a@b"));
}

TEST_CASE("address patterns refuse empty and malformed text") {
    CHECK_FALSE(AddressPattern::parse(""));
    CHECK_FALSE(AddressPattern::parse("@"));
    CHECK_FALSE(AddressPattern::parse("user@"));
    CHECK_FALSE(AddressPattern::parse("a b@c"));
    CHECK_FALSE(AddressPattern::parse("@a@b"));
}

TEST_CASE("an empty filter matches every message") {
    const Filter f;
    CHECK(f.empty());
    CHECK(f.matches(message("a@b", {"c@d"}, 0), spool::MsgState::kReady, kNow));
}

TEST_CASE("every given condition must hold") {
    Filter f;
    f.klass = 1;
    f.state = spool::MsgState::kDeferred;
    f.senders.push_back(*AddressPattern::parse("@news.example"));
    f.older_than_ms = 2 * kHour;
    f.max_size = 5000;
    CHECK_FALSE(f.empty());
    const auto env = message("list@news.example", {"u@x"}, 3 * kHour);
    CHECK(f.matches(env, spool::MsgState::kDeferred, kNow));
    CHECK_FALSE(f.matches(env, spool::MsgState::kReady, kNow));
    CHECK_FALSE(f.matches(message("list@news.example", {"u@x"}, 1 * kHour),
                          spool::MsgState::kDeferred, kNow));
    CHECK_FALSE(
        f.matches(message("list@other", {"u@x"}, 3 * kHour), spool::MsgState::kDeferred, kNow));
    CHECK_FALSE(f.matches(message("list@news.example", {"u@x"}, 3 * kHour, 6000),
                          spool::MsgState::kDeferred, kNow));
    CHECK_FALSE(f.matches(message("list@news.example", {"u@x"}, 3 * kHour, 100, 2),
                          spool::MsgState::kDeferred, kNow));
}

TEST_CASE("age and size bounds are strict on the side an operator expects") {
    Filter f;
    f.newer_than_ms = kHour;
    f.min_size = 100;
    CHECK(f.matches(message("a@b", {"c@d"}, kHour - 1, 100), spool::MsgState::kReady, kNow));
    CHECK_FALSE(f.matches(message("a@b", {"c@d"}, kHour, 100), spool::MsgState::kReady, kNow));
    CHECK_FALSE(f.matches(message("a@b", {"c@d"}, 0, 99), spool::MsgState::kReady, kNow));
}

TEST_CASE("a recipient filter looks only at recipients still waiting") {
    Filter f;
    f.recipients.push_back(*AddressPattern::parse("mary@corp.example"));
    auto env = message("a@b", {"joe@corp.example", "mary@corp.example"}, 0);
    CHECK(f.matches(env, spool::MsgState::kReady, kNow));
    env.recipients[1].state = spool::RcptState::kDelivered;
    CHECK_FALSE(f.matches(env, spool::MsgState::kReady, kNow));
    env.recipients[1].state = spool::RcptState::kDeferred;
    CHECK(f.matches(env, spool::MsgState::kDeferred, kNow));
}

TEST_CASE("a mailbox pattern matches the address and its +tag forms, nothing that only looks so") {
    const AddressPattern p = AddressPattern::parse("Mary@Corp.example")->with_tags('+');
    CHECK(p.matches("mary@corp.example"));
    CHECK(p.matches("MARY+news@corp.EXAMPLE"));
    CHECK(p.matches("mary+@corp.example"));
    CHECK_FALSE(p.matches("marya@corp.example"));
    CHECK_FALSE(p.matches("mary-news@corp.example"));
    CHECK_FALSE(p.matches("mary+news@corp.example.net"));
    CHECK_FALSE(p.matches("mary+news@other.example"));
    CHECK_FALSE(AddressPattern::parse("mary@corp.example")->matches("mary+news@corp.example"));
    CHECK(p.address() == std::optional<std::string_view>{"mary@corp.example"});
    CHECK_FALSE(AddressPattern::parse("@corp.example")->address().has_value());
}

TEST_CASE("a recipient filter stands for the mailbox: its aliases, followed back, and their tags") {
    Filter f;
    f.recipients.push_back(*AddressPattern::parse("mary@corp.example"));
    f.recipients.push_back(*AddressPattern::parse("@other.example"));
    // sales -> mary, info -> sales, and a loop back to mary that must not run forever.
    const AliasesOf aliases = [](std::string_view name) -> std::vector<std::string> {
        if (name == "mary@corp.example") {
            return {"sales@corp.example", "m.smith@corp.example"};
        }
        if (name == "sales@corp.example") {
            return {"info@corp.example", "mary@corp.example"};
        }
        return {};
    };
    const Filter g = for_mailboxes(f, '+', aliases);
    std::vector<std::string> names;
    for (const auto& p : g.recipients) {
        names.emplace_back(p.address().value_or("(domain)"));
        CHECK(p.tag_delimiter() == (p.address() ? '+' : 0));
    }
    CHECK(names == std::vector<std::string>{"mary@corp.example", "sales@corp.example",
                                            "m.smith@corp.example", "info@corp.example",
                                            "(domain)"});
    auto env = message("a@b", {"info+q1@corp.example"}, 0);
    CHECK(g.matches(env, spool::MsgState::kReady, kNow));
    CHECK_FALSE(f.matches(env, spool::MsgState::kReady, kNow));
    // Without a directory and a delimiter: the address itself.
    const Filter plain = for_mailboxes(f, 0, {});
    CHECK(plain.recipients.size() == 2);
    CHECK_FALSE(
        plain.matches(message("a@b", {"mary+x@corp.example"}, 0), spool::MsgState::kReady, kNow));
}
