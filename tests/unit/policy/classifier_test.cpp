#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "policy/classifier.hpp"

using namespace spoold::policy;

namespace {

Classifier sample_classifier(const Config** out = nullptr) {
    static const auto config = load_config(SPOOLD_SOURCE_DIR "/etc/spoold.yaml");
    REQUIRE(config);
    if (out != nullptr) {
        *out = config->get();
    }
    auto c = Classifier::compile(**config);
    REQUIRE(c);
    return *c;
}

} // namespace

TEST_CASE("the sample rules classify a table of messages") {
    const Config* config = nullptr;
    const Classifier classifier = sample_classifier(&config);
    const auto urgent = *config->class_id("urgent");
    const auto normal = *config->class_id("normal");
    const auto bulk = *config->class_id("bulk");
    struct Case {
        std::string headers;
        std::uint8_t expected;
    };
    const Case cases[] = {
        {"Subject: hi\r\n\r\n", normal},
        {"Priority: urgent\r\n\r\n", urgent},
        {"priority:   Urgent\r\n\r\n", urgent},
        {"Priority: non-urgent\r\n\r\n", normal},
        {"Importance: High\r\n\r\n", urgent},
        {"Importance: low\r\n\r\n", normal},
        {"X-Priority: 1 (Highest)\r\n\r\n", urgent},
        {"X-Priority: 2\r\n\r\n", urgent},
        {"X-Priority: 3 (Normal)\r\n\r\n", normal},
        {"X-Priority: 12\r\n\r\n", normal},
        {"Precedence: bulk\r\n\r\n", bulk},
        {"Precedence: list\r\n\r\n", bulk},
        {"Precedence: JUNK\r\n\r\n", bulk},
        {"Precedence: first-class\r\n\r\n", normal},
        {"List-Id: News <news.example.com>\r\n\r\n", bulk},
        {"List-Unsubscribe: <mailto:u@example.com>\r\n\r\n", bulk},
        {"Auto-Submitted: auto-generated\r\n\r\n", bulk},
        {"Auto-Submitted: no\r\n\r\n", normal},
        // First rule wins: urgent rules come before bulk ones.
        {"List-Id: <x.example>\r\nPriority: urgent\r\n\r\n", urgent},
        // Headers after the blank line are the body, not the header.
        {"Subject: x\r\n\r\nPrecedence: bulk\r\n", normal},
        // Folded value.
        {"Precedence:\r\n bulk\r\n\r\n", bulk},
        {"", normal},
        {"garbage without structure \x01\x02\r\n\r\n", normal},
    };
    for (const auto& c : cases) {
        MessageFacts facts;
        facts.sender = "someone@example.org";
        facts.recipients = {"alice@example.com"};
        facts.client_address = "192.0.2.1";
        facts.size = 1000;
        facts.header_block = c.headers;
        CAPTURE(c.headers);
        CHECK(classifier.classify(facts) == c.expected);
    }
}

TEST_CASE("sender, recipient, network and size conditions combine with AND") {
    auto config = parse_config(R"(
local_domains: [example.com]
rules:
  - class: urgent
    sender: ["boss@example.com", "@vip.example"]
  - class: urgent
    recipient: [ceo@example.com]
  - class: bulk
    client_net: [198.51.100.0/24, "2001:db8:bad::/48"]
  - class: bulk
    size_over: 10MiB
  - class: urgent
    sender: partner.example
    size_under: 1KiB
)",
                               "test.yaml");
    REQUIRE(config);
    const auto classifier = Classifier::compile(**config).value();
    const auto urgent = *(*config)->class_id("urgent");
    const auto normal = *(*config)->class_id("normal");
    const auto bulk = *(*config)->class_id("bulk");
    struct Case {
        std::string sender;
        std::string recipient;
        std::string client;
        std::uint64_t size;
        std::uint8_t expected;
        std::optional<std::size_t> rule;
    };
    const Case cases[] = {
        {"BOSS@Example.com", "a@example.com", "192.0.2.1", 100, urgent, 0},
        {"x@VIP.example", "a@example.com", "192.0.2.1", 100, urgent, 0},
        {"x@sub.vip.example", "a@example.com", "192.0.2.1", 100, normal, std::nullopt},
        {"boss@example.com.evil", "a@example.com", "192.0.2.1", 100, normal, std::nullopt},
        {"", "a@example.com", "192.0.2.1", 100, normal, std::nullopt},
        {"x@y.example", "CEO@example.com", "192.0.2.1", 100, urgent, 1},
        {"x@y.example", "a@example.com", "198.51.100.77", 100, bulk, 2},
        {"x@y.example", "a@example.com", "[IPv6:2001:db8:bad::1]", 100, bulk, 2},
        {"x@y.example", "a@example.com", "2001:db8:bae::1", 100, normal, std::nullopt},
        {"x@y.example", "a@example.com", "not an address", 100, normal, std::nullopt},
        {"x@y.example", "a@example.com", "192.0.2.1", (10ULL << 20U) + 1, bulk, 3},
        {"x@y.example", "a@example.com", "192.0.2.1", 10ULL << 20U, normal, std::nullopt},
        {"x@partner.example", "a@example.com", "192.0.2.1", 1023, urgent, 4},
        {"x@partner.example", "a@example.com", "192.0.2.1", 1024, normal, std::nullopt},
    };
    for (const auto& c : cases) {
        MessageFacts facts;
        facts.sender = c.sender;
        facts.recipients = {"other@example.com", c.recipient};
        facts.client_address = c.client;
        facts.size = c.size;
        CAPTURE(c.sender);
        CAPTURE(c.client);
        CAPTURE(c.size);
        CHECK(classifier.classify(facts) == c.expected);
        CHECK(classifier.matching_rule(facts) == c.rule);
    }
}

TEST_CASE("a huge folded header is matched without trouble") {
    const Classifier classifier = sample_classifier();
    std::string headers = "Precedence: bulk";
    for (int i = 0; i < 20000; ++i) {
        headers += "\r\n x";
    }
    headers += "\r\n\r\n";
    MessageFacts facts;
    facts.header_block = headers;
    // The anchored regex needs the end of the value, which is cut off: no match, no crash.
    CHECK(classifier.classify(facts) == classifier.default_class());
}

namespace {

// One rule: class urgent when header `name` matches `regex`.
Classifier header_rule_classifier(const std::string& name, const std::string& regex) {
    auto config =
        parse_config("local_domains: [example.com]\nrules:\n  - class: urgent\n    headers:\n"
                     "      - name: " +
                         name + "\n        regex: '" + regex + "'\n",
                     "test.yaml");
    REQUIRE(config);
    auto c = Classifier::compile(**config);
    REQUIRE(c);
    return *c;
}

} // namespace

TEST_CASE("header regexes keep regex_search semantics: anchors, alternation, lookahead, case") {
    struct Case {
        std::string regex;
        std::string value;
        bool matches;
    };
    const Case cases[] = {
        {"urgent", "very URGENT indeed", true},
        {"^urgent", "very urgent", false},
        {"^\\s*urgent", "urgent now", true},
        {"end$", "the end", true},
        {"end$", "end x", false},
        {"a|^b", "xb", false},
        {"a|^b", "bx", true},
        {"\\burgent\\b", "veryurgent", false},
        {"\\burgent\\b", "very urgent!", true},
        {"^(?!no)urgent", "nourgent", false},
        {"^(?!no)urgent", "urgent", true},
        {"[)]", "a)", true},
        {"^\\s*[12]\\b", "12", false},
        {"^\\s*[12]\\b", "1 (Highest)", true},
        {"(x)y\\1", "xyx", true},
        {"(x)y\\1", "xyy", false},
    };
    for (const auto& c : cases) {
        CAPTURE(c.regex);
        CAPTURE(c.value);
        const Classifier classifier = header_rule_classifier("Subject", c.regex);
        const std::string headers = "Subject: " + c.value + "\r\n\r\n";
        MessageFacts facts;
        facts.header_block = headers;
        CHECK(classifier.matching_rule(facts).has_value() == c.matches);
    }
}

TEST_CASE("an unanchored header regex takes linear time on hostile header values (fuzz finding)") {
    // Found by tests/fuzz/fuzz_header_scan: with the backtracking executor ".*urgent.*" took
    // 1.4 s per 4 KiB value (release build), so 16 such fields took over 20 s per message.
    // No wall-clock bound (this machine may be loaded, or under ASan): the same scan with the
    // plain "urgent", measured alongside, is the baseline. Linear, the two cost about the
    // same; the quadratic executor made ".*urgent.*" hundreds of times dearer. Each is timed
    // as the fastest of a few runs, which load only slows.
    std::string headers;
    for (int i = 0; i < 16; ++i) {
        headers += "Subject: " + std::string(kMaxMatchedValue, 'a') + "\r\n";
    }
    headers += "\r\n";
    MessageFacts facts;
    facts.header_block = headers;
    const auto fastest_scan = [&](const char* regex) {
        const Classifier classifier = header_rule_classifier("Subject", regex);
        auto fastest = std::chrono::steady_clock::duration::max();
        for (int run = 0; run < 5; ++run) {
            const auto start = std::chrono::steady_clock::now();
            CHECK_FALSE(classifier.matching_rule(facts).has_value());
            fastest = std::min(fastest, std::chrono::steady_clock::now() - start);
        }
        return std::chrono::duration<double>(fastest).count();
    };
    const double plain = fastest_scan("urgent");
    const double unanchored = fastest_scan(".*urgent.*");
    CAPTURE(plain);
    CAPTURE(unanchored);
    CHECK(unanchored < 20 * plain);
}
