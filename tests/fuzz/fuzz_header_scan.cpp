// libFuzzer target: the bounded header scanner and the classifier on fuzzed messages, with
// the rules of etc/spoold.yaml plus rules on every other fact. Input: 2 bytes picking the
// scan bound, then "sender NUL recipients (comma-separated) NUL client address NUL message".
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/classifier.hpp"
#include "policy/config.hpp"
#include "policy/header_scan.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace spoold;
using spoold::fuzz::check;
using namespace spoold::policy;

namespace {

std::optional<Classifier> g_classifier;
std::shared_ptr<const Config> g_config;

// The sample configuration's header rules, then rules on sender, recipient, network and
// size, so every branch of Classifier::matches is reachable.
std::shared_ptr<const Config> make_config() {
    auto loaded = load_config(SPOOLD_SAMPLE_CONFIG);
    if (!loaded) {
        std::fprintf(stderr, "etc/spoold.yaml does not load: %s\n",
                     loaded.error().describe().c_str());
        std::abort();
    }
    auto config = std::make_shared<Config>(**loaded);
    ClassRule by_sender;
    by_sender.klass = config->classes.front().name;
    by_sender.sender = {"alerts@example.com", "@monitoring.example.com", "partner.example"};
    by_sender.size_under = 100 * 1024;
    ClassRule by_rcpt;
    by_rcpt.klass = config->classes.back().name;
    by_rcpt.recipient = {"noc@example.com", "@lists.example.com"};
    by_rcpt.client_net = {"192.0.2.0/24", "2001:db8:1::/48"};
    ClassRule by_size;
    by_size.klass = config->classes.back().name;
    by_size.size_over = 20ULL << 20U;
    by_size.headers = {HeaderTest{"Subject", "(a|b)*c\\d+$"}, HeaderTest{"From", ""}};
    // An unanchored operator regex: quadratic on the backtracking executor.
    ClassRule by_keyword;
    by_keyword.klass = config->classes.front().name;
    by_keyword.headers = {HeaderTest{"Subject", ".*urgent.*"}};
    config->rules.push_back(by_keyword);
    config->rules.push_back(by_sender);
    config->rules.push_back(by_rcpt);
    config->rules.push_back(by_size);
    return config;
}

std::string_view next_field(std::string_view& rest) {
    const auto nul = rest.find('\0');
    const std::string_view field = rest.substr(0, nul);
    rest = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
    return field;
}

bool is_blank(char c) { return c == ' ' || c == '\t'; }

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    g_config = make_config();
    auto compiled = Classifier::compile(*g_config);
    if (!compiled) {
        std::fprintf(stderr, "rules do not compile: %s\n", compiled.error().describe().c_str());
        std::abort();
    }
    g_classifier.emplace(std::move(*compiled));
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) {
        return 0;
    }
    const unsigned selector = static_cast<unsigned>(data[0]) << 8U | data[1];
    // Mostly small bounds (cut lines), sometimes the real one.
    const std::size_t max_bytes = (selector & 0x8000U) != 0 ? kHeaderScanBytes : selector & 0x0FFFU;
    std::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
    const std::string_view whole = rest;

    const auto fields = scan_headers(whole, max_bytes);
    std::size_t total = 0;
    for (const auto& f : fields) {
        check(!f.name.empty(), "empty field name");
        for (const char c : f.name) {
            const auto u = static_cast<unsigned char>(c);
            check(u > ' ' && u < 127 && c != ':', "bad character in a field name", f.name);
        }
        check(f.value.find('\n') == std::string::npos, "LF in an unfolded value", f.value);
        if (!f.value.empty()) {
            check(!is_blank(f.value.front()) && !is_blank(f.value.back()), "value not trimmed",
                  f.value);
        }
        total += f.name.size() + f.value.size();
    }
    check(total <= max_bytes, "the scan returned more than its bound");
    check(header_name_equal("Subject", "sUBJECT") && !header_name_equal("Subject", "Subjec"),
          "header_name_equal");

    const std::string_view sender = next_field(rest);
    std::string_view rcpt_list = next_field(rest);
    const std::string_view client = next_field(rest);
    MessageFacts facts;
    facts.sender = sender;
    while (!rcpt_list.empty()) {
        const auto comma = rcpt_list.find(',');
        facts.recipients.push_back(rcpt_list.substr(0, comma));
        rcpt_list =
            comma == std::string_view::npos ? std::string_view() : rcpt_list.substr(comma + 1);
    }
    facts.client_address = client;
    facts.size = rest.size() * 4096U;
    facts.header_block = rest;
    const std::uint8_t klass = g_classifier->classify(facts);
    check(klass < g_config->classes.size(), "class id out of range");
    const auto rule = g_classifier->matching_rule(facts);
    if (std::getenv("SPOOLD_FUZZ_TRACE") != nullptr) {
        std::fprintf(stderr, "fields=%zu message fields=%zu size=%llu class=%u rule=%d\n",
                     fields.size(), scan_headers(rest).size(),
                     static_cast<unsigned long long>(facts.size), static_cast<unsigned>(klass),
                     rule ? static_cast<int>(*rule) : -1);
    }
    if (rule) {
        check(*rule < g_config->rules.size(), "rule index out of range");
        check(g_config->class_id(g_config->rules[*rule].klass) == klass,
              "class differs from its rule's");
    } else {
        check(klass == g_classifier->default_class(), "no rule but not the default class");
    }
    return 0;
}
