// Bad input never crashes policy/: mutated configs, random header bytes and directory
// files each give a value or a clean error. Deterministic (fixed seeds).
#include <doctest/doctest.h>

#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <string>

#include "policy/classifier.hpp"
#include "policy/config.hpp"
#include "policy/directory_file.hpp"
#include "policy/header_scan.hpp"

using namespace spoold;
using namespace spoold::policy;

namespace {

std::string sample_text() {
    std::ifstream in(SPOOLD_SOURCE_DIR "/etc/spoold.yaml");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

std::string mutate(std::string s, std::mt19937& rng) {
    static constexpr std::string_view kAlphabet = " :-[]{}\"'#\n\t|>&*!%@`,?0123456789abcz\\";
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !s.empty(); ++e) {
        const std::size_t pos = rng() % s.size();
        switch (rng() % 3) {
        case 0: s.erase(pos, 1 + rng() % 8); break;
        case 1: s.insert(pos, 1, kAlphabet[rng() % kAlphabet.size()]); break;
        default: s[pos] = kAlphabet[rng() % kAlphabet.size()]; break;
        }
    }
    return s;
}

} // namespace

TEST_CASE("mutated configurations load or fail with one positioned config error") {
    const std::string sample = sample_text();
    REQUIRE(!sample.empty());
    std::mt19937 rng(12345);
    const std::regex positioned(R"(^test\.yaml:\d+:\d+: .+)");
    int refused = 0;
    for (int i = 0; i < 1500; ++i) {
        const std::string text = mutate(sample, rng);
        auto config = parse_config(text, "test.yaml");
        if (config) {
            // Whatever loaded must still be compilable into a classifier.
            CHECK(Classifier::compile(**config).has_value());
            continue;
        }
        ++refused;
        CHECK(config.error().kind == ErrorKind::kConfig);
        const bool has_position = std::regex_search(config.error().message, positioned);
        CHECK_MESSAGE(has_position, config.error().message);
    }
    CHECK(refused > 100);
}

TEST_CASE("random bytes never upset the header scanner or the classifier") {
    auto config = load_config(SPOOLD_SOURCE_DIR "/etc/spoold.yaml");
    REQUIRE(config);
    const auto classifier = Classifier::compile(**config).value();
    std::mt19937 rng(777);
    for (int i = 0; i < 2000; ++i) {
        std::string bytes(rng() % 3000, '\0');
        for (auto& b : bytes) {
            // Mostly header-like text, with line breaks and raw bytes mixed in.
            const auto r = rng() % 16;
            b = r == 0   ? '\n'
                : r == 1 ? '\r'
                : r == 2 ? ':'
                : r == 3 ? ' '
                : r == 4 ? static_cast<char>(rng() % 256)
                         : static_cast<char>('a' + rng() % 26);
        }
        const std::size_t bound = rng() % 4096;
        const auto fields = scan_headers(bytes, bound);
        for (const auto& f : fields) {
            CHECK(f.name.size() + f.value.size() <= bound);
        }
        MessageFacts facts;
        facts.header_block = bytes;
        facts.client_address = std::string_view(bytes).substr(0, 20);
        facts.sender = std::string_view(bytes).substr(0, 40);
        CHECK(classifier.classify(facts) < (*config)->classes.size());
    }
}

TEST_CASE("random directory files parse or fail with a line number") {
    DirectoryConfig c;
    c.default_domain = "example.com";
    std::mt19937 rng(99);
    static constexpr std::string_view kAlphabet = "ab@.:# \n\r\t-+_A";
    for (int i = 0; i < 2000; ++i) {
        std::string text(rng() % 200, ' ');
        for (auto& ch : text) {
            ch = kAlphabet[rng() % kAlphabet.size()];
        }
        c.format = (i % 2) == 0 ? DirectoryFormat::kList : DirectoryFormat::kPasswd;
        auto entries = parse_directory(text, c, "dir");
        if (!entries) {
            CHECK(entries.error().kind == ErrorKind::kConfig);
            CHECK(entries.error().message.starts_with("dir:"));
        }
    }
}
