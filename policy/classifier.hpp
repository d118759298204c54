// Priority classification: the configured rules compiled once (regexes, networks,
// lower-cased patterns) and applied to the facts of one message. Does not read the
// spool or the network; the caller gathers the facts at the end of DATA.
#pragma once

#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "policy/cidr.hpp"
#include "policy/config.hpp"
#include "policy/header_scan.hpp"

namespace spoold::policy {

// What classification looks at. Views: valid for the duration of the call.
struct MessageFacts {
    std::string_view sender; // reverse path without brackets; "" = null sender
    std::vector<std::string_view> recipients;
    std::string_view client_address; // "203.0.113.5", "2001:db8::1", "[...]" too
    std::uint64_t size = 0;          // message size in bytes
    std::string_view header_block;   // start of the message; only the first
                                     // kHeaderScanBytes are read
};

// Regex tests see at most this much of a header value: libstdc++'s std::regex recurses
// per character and would overflow the stack on a huge folded header.
inline constexpr std::size_t kMaxMatchedValue = 4096;

class Classifier {
public:
    // Compiles config.rules. Errors: kConfig when a rule does not compile (cannot happen
    // for a Config from load_config, which validated the same things).
    static Result<Classifier> compile(const Config& config);

    // The class id (index into Config::classes) of the first matching rule, else the
    // default class.
    std::uint8_t classify(const MessageFacts& facts) const;
    // Index into Config::rules of the first matching rule (for logs), nullopt = default.
    std::optional<std::size_t> matching_rule(const MessageFacts& facts) const;

    std::uint8_t default_class() const { return default_class_; }

private:
    struct CompiledHeaderTest {
        std::string name;
        std::optional<std::regex> regex; // empty = header present
        bool whole_value = false;        // regex is "[\s\S]*(?:re)[\s\S]*": regex_match, not search
    };
    struct Pattern {
        std::string text; // lower-cased "user@domain", or a domain
        bool domain_only = false;
    };
    struct CompiledRule {
        std::uint8_t klass = 0;
        std::vector<Pattern> sender;
        std::vector<Pattern> recipient;
        std::vector<Cidr> client_net;
        std::vector<CompiledHeaderTest> headers;
        std::optional<std::uint64_t> size_over;
        std::optional<std::uint64_t> size_under;
    };

    static bool matches(const CompiledRule& rule, const MessageFacts& facts,
                        const std::vector<HeaderField>& headers);

    std::vector<CompiledRule> rules_;
    std::uint8_t default_class_ = 0;
    bool needs_headers_ = false; // skip the scan when no rule tests a header
};

} // namespace spoold::policy
