#include "tools/spoolctl/filter.hpp"

#include <algorithm>

#include "common/address.hpp"

namespace spoold::spoolctl {
namespace {

using address::ascii_lower;
using address::iequals;

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
        p.text_ = ascii_lower(domain);
        return p;
    }
    if (at + 1 == text.size()) {
        return std::nullopt; // "user@" names no domain
    }
    p.text_ = ascii_lower(text);
    return p;
}

bool AddressPattern::matches(std::string_view address) const {
    if (null_sender_) {
        return address.empty();
    }
    if (!domain_) {
        if (iequals(address, text_)) {
            return true;
        }
        if (tag_ == 0) {
            return false;
        }
        // local+tag@domain: the same domain, the local part followed by the delimiter.
        const auto at = text_.rfind('@');
        const auto their_at = address.rfind('@');
        return their_at != std::string_view::npos && their_at > at &&
               iequals(address.substr(their_at), std::string_view(text_).substr(at)) &&
               address[at] == tag_ && iequals(address.substr(0, at), text_.substr(0, at));
    }
    const auto at = address.rfind('@');
    return at != std::string_view::npos && iequals(address.substr(at + 1), text_);
}

std::optional<std::string_view> AddressPattern::address() const {
    if (domain_ || null_sender_) {
        return std::nullopt;
    }
    return text_;
}

AddressPattern AddressPattern::with_tags(char delimiter) const {
    AddressPattern p = *this;
    if (!domain_ && !null_sender_) {
        p.tag_ = delimiter;
    }
    return p;
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

Filter for_mailboxes(Filter filter, char delimiter, const AliasesOf& aliases_of) {
    std::vector<AddressPattern> out;
    const auto add = [&out](AddressPattern p) {
        if (std::find(out.begin(), out.end(), p) == out.end()) {
            out.push_back(std::move(p));
        }
    };
    for (const AddressPattern& p : filter.recipients) {
        const auto whole = p.address();
        if (!whole) {
            add(p);
            continue;
        }
        std::vector<std::string> names{std::string(*whole)};
        std::vector<std::string> frontier = names;
        for (int step = 0; step < kMaxAliasSteps && aliases_of && !frontier.empty(); ++step) {
            std::vector<std::string> next;
            for (const auto& name : frontier) {
                for (auto& alias : aliases_of(name)) {
                    if (std::find(names.begin(), names.end(), alias) == names.end()) {
                        names.push_back(alias);
                        next.push_back(std::move(alias));
                    }
                }
            }
            frontier = std::move(next);
        }
        for (const auto& name : names) {
            if (auto q = AddressPattern::parse(name)) {
                add(delimiter != 0 ? q->with_tags(delimiter) : *q);
            }
        }
    }
    filter.recipients = std::move(out);
    return filter;
}

} // namespace spoold::spoolctl
