#include "tools/spoolctl/filter.hpp"

#include <algorithm>
#include <cctype>

namespace spoold::spoolctl {
namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](unsigned char x, unsigned char y) {
               return std::tolower(x) == std::tolower(y);
           });
}

} // namespace

std::optional<AddressPattern> AddressPattern::parse(std::string_view text) {
    AddressPattern p;
    if (text == "<>") {
        p.null_sender_ = true;
        return p;
    }
    if (text.size() >= 2 && text.front() == '<' && text.back() == '>') {
        text = text.substr(1, text.size() - 2);
    }
    if (text.empty() || text.find_first_of(" \t\r\n") != std::string_view::npos) {
        return std::nullopt;
    }
    const auto at = text.rfind('@');
    if (at == std::string_view::npos || text.front() == '@') {
        const std::string_view domain = text.front() == '@' ? text.substr(1) : text;
        if (domain.empty() || domain.find('@') != std::string_view::npos) {
            return std::nullopt;
        }
        p.domain_ = true;
        p.text_ = lower(domain);
        return p;
    }
    if (at + 1 == text.size()) {
        return std::nullopt; // "user@" names no domain
    }
    p.text_ = lower(text);
    return p;
}

bool AddressPattern::matches(std::string_view address) const {
    if (null_sender_) {
        return address.empty();
    }
    if (!domain_) {
        return iequals(address, text_);
    }
    const auto at = address.rfind('@');
    return at != std::string_view::npos && iequals(address.substr(at + 1), text_);
}

bool Filter::empty() const {
    return !klass && !state && senders.empty() && recipients.empty() && !older_than_ms &&
           !newer_than_ms && !min_size && !max_size;
}

bool Filter::matches(const spool::Envelope& env, spool::MsgState msg_state,
                     UnixMillis now_ms) const {
    // Cheapest tests first: most listings on a big spool are decided by class or state.
    if (klass && env.klass != *klass) {
        return false;
    }
    if (state && msg_state != *state) {
        return false;
    }
    if (min_size && env.size < *min_size) {
        return false;
    }
    if (max_size && env.size > *max_size) {
        return false;
    }
    const std::int64_t age = now_ms - env.arrival_ms;
    if (older_than_ms && age <= *older_than_ms) {
        return false;
    }
    if (newer_than_ms && age >= *newer_than_ms) {
        return false;
    }
    if (!senders.empty() &&
        std::none_of(senders.begin(), senders.end(),
                     [&](const AddressPattern& p) { return p.matches(env.mail_from); })) {
        return false;
    }
    if (!recipients.empty()) {
        // Final recipients are history: "--recipient x" means mail still waiting for x.
        const bool any = std::any_of(
            env.recipients.begin(), env.recipients.end(), [&](const spool::Recipient& r) {
                return (r.state == spool::RcptState::kQueued ||
                        r.state == spool::RcptState::kDeferred) &&
                       std::any_of(recipients.begin(), recipients.end(),
                                   [&](const AddressPattern& p) { return p.matches(r.address); });
            });
        if (!any) {
            return false;
        }
    }
    return true;
}

} // namespace spoold::spoolctl
