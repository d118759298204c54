#include "policy/classifier.hpp"

#include <algorithm>

#include "policy/text.hpp"

namespace spoold::policy {
namespace {

constexpr auto kRegexFlags = std::regex::ECMAScript | std::regex::icase | std::regex::optimize;

// libstdc++'s default regex executor backtracks: regex_search with an unanchored pattern such
// as ".*urgent.*" costs O(n^2) steps (1.4 s for one 4 KiB header value, found by fuzzing), and
// the sender chooses the values. The same test as one regex_match of "[\s\S]*(?:re)[\s\S]*"
// on the Thompson-NFA executor (libstdc++'s __polynomial) is linear in the value. That
// executor cannot do back-references, so a pattern with one keeps the backtracking search.
bool has_backreference(std::string_view re) {
    for (std::size_t i = 0; i + 1 < re.size(); ++i) {
        if (re[i] == '\\') {
            if (re[i + 1] >= '1' && re[i + 1] <= '9') {
                return true;
            }
            ++i; // an escaped character, e.g. the backslash of "\\1"
        }
    }
    return false;
}

} // namespace

Result<Classifier> Classifier::compile(const Config& config) {
    Classifier out;
    const auto default_id = config.class_id(config.default_class);
    if (!default_id) {
        return fail(ErrorKind::kConfig,
                    "default class \"" + config.default_class + "\" is unknown");
    }
    out.default_class_ = *default_id;
    for (const auto& rule : config.rules) {
        CompiledRule r;
        const auto id = config.class_id(rule.klass);
        if (!id) {
            return fail(ErrorKind::kConfig, "rule names unknown class \"" + rule.klass + "\"");
        }
        r.klass = *id;
        const auto patterns = [](const std::vector<std::string>& in) {
            std::vector<Pattern> ps;
            for (const auto& p : in) {
                const std::string l = ascii_lower(p);
                if (l.find('@') == std::string::npos) {
                    ps.push_back(Pattern{l, true});
                } else if (l.front() == '@') {
                    ps.push_back(Pattern{l.substr(1), true});
                } else {
                    ps.push_back(Pattern{l, false});
                }
            }
            return ps;
        };
        r.sender = patterns(rule.sender);
        r.recipient = patterns(rule.recipient);
        for (const auto& net : rule.client_net) {
            auto cidr = parse_cidr(net);
            if (!cidr) {
                return fail(ErrorKind::kConfig, cidr.error().message);
            }
            r.client_net.push_back(*cidr);
        }
        for (const auto& test : rule.headers) {
            CompiledHeaderTest t{test.name, std::nullopt, false};
            if (!test.regex.empty()) {
                try {
                    t.whole_value = !has_backreference(test.regex);
                    if (t.whole_value) {
                        t.regex.emplace("[\\s\\S]*(?:" + test.regex + ")[\\s\\S]*",
                                        kRegexFlags | std::regex_constants::__polynomial);
                    } else {
                        t.regex.emplace(test.regex, kRegexFlags);
                    }
                } catch (const std::regex_error& e) {
                    return fail(ErrorKind::kConfig,
                                "bad regular expression \"" + test.regex + "\": " + e.what());
                }
            }
            r.headers.push_back(std::move(t));
        }
        out.needs_headers_ = out.needs_headers_ || !r.headers.empty();
        r.size_over = rule.size_over;
        r.size_under = rule.size_under;
        out.rules_.push_back(std::move(r));
    }
    return out;
}

namespace {

// Addresses compare case-insensitively: in practice no mailstore distinguishes local
// parts by case, and a rule that misses "Boss@" for "boss@" would surprise the operator.
bool pattern_matches(std::string_view text, bool domain_only, std::string_view address) {
    if (address.empty()) {
        return false;
    }
    const std::string a = ascii_lower(address);
    if (!domain_only) {
        return a == text;
    }
    const auto at = a.rfind('@');
    return at != std::string::npos && a.compare(at + 1, std::string::npos, text) == 0;
}

} // namespace

bool Classifier::matches(const CompiledRule& rule, const MessageFacts& facts,
                         const std::vector<HeaderField>& headers) {
    const auto any_pattern = [](const std::vector<Pattern>& patterns, std::string_view address) {
        return std::any_of(patterns.begin(), patterns.end(), [&](const Pattern& p) {
            return pattern_matches(p.text, p.domain_only, address);
        });
    };
    if (!rule.sender.empty() && !any_pattern(rule.sender, facts.sender)) {
        return false;
    }
    if (!rule.recipient.empty() &&
        std::none_of(facts.recipients.begin(), facts.recipients.end(),
                     [&](std::string_view r) { return any_pattern(rule.recipient, r); })) {
        return false;
    }
    if (!rule.client_net.empty()) {
        const auto ip = parse_ip(facts.client_address);
        if (!ip || std::none_of(rule.client_net.begin(), rule.client_net.end(),
                                [&](const Cidr& c) { return c.contains(*ip); })) {
            return false;
        }
    }
    if (rule.size_over && !(facts.size > *rule.size_over)) {
        return false;
    }
    if (rule.size_under && !(facts.size < *rule.size_under)) {
        return false;
    }
    for (const auto& test : rule.headers) {
        const bool found = std::any_of(headers.begin(), headers.end(), [&](const HeaderField& f) {
            if (!header_name_equal(f.name, test.name)) {
                return false;
            }
            if (!test.regex) {
                return true;
            }
            const std::string_view v = std::string_view(f.value).substr(0, kMaxMatchedValue);
            return test.whole_value ? std::regex_match(v.begin(), v.end(), *test.regex)
                                    : std::regex_search(v.begin(), v.end(), *test.regex);
        });
        if (!found) {
            return false;
        }
    }
    return true;
}

std::optional<std::size_t> Classifier::matching_rule(const MessageFacts& facts) const {
    std::vector<HeaderField> headers;
    if (needs_headers_) {
        headers = scan_headers(facts.header_block, kHeaderScanBytes);
    }
    for (std::size_t i = 0; i < rules_.size(); ++i) {
        if (matches(rules_[i], facts, headers)) {
            return i;
        }
    }
    return std::nullopt;
}

std::uint8_t Classifier::classify(const MessageFacts& facts) const {
    const auto rule = matching_rule(facts);
    return rule ? rules_[*rule].klass : default_class_;
}

} // namespace spoold::policy
