#include "drain/mail_log.hpp"

#include <cctype>
#include <fmt/format.h>
#include <string_view>

namespace spoold::drain {
namespace {

// "2.1.5" in a reply such as "250 2.1.5 Ok", else what Postfix would say for the state.
std::string dsn_of(std::string_view response, spool::RcptState state) {
    std::size_t pos = 0;
    while (pos < response.size()) {
        const auto end = response.find(' ', pos);
        const std::string_view word = response.substr(pos, end - pos);
        const bool code = word.size() >= 5 &&
                          (word[0] == '2' || word[0] == '4' || word[0] == '5') && word[1] == '.' &&
                          word.find('.', 2) != std::string_view::npos &&
                          word.find_first_not_of("0123456789.") == std::string_view::npos;
        if (code) {
            return std::string(word);
        }
        if (end == std::string_view::npos) {
            break;
        }
        pos = end + 1;
    }
    switch (state) {
    case spool::RcptState::kDelivered: return "2.0.0";
    case spool::RcptState::kFailed: return "5.0.0";
    case spool::RcptState::kExpired: return "4.4.7";
    default: return "4.0.0";
    }
}

std::string_view status_of(spool::RcptState state) {
    switch (state) {
    case spool::RcptState::kDelivered: return "sent";
    case spool::RcptState::kDeferred: return "deferred";
    case spool::RcptState::kFailed: return "bounced";
    case spool::RcptState::kExpired: return "expired";
    case spool::RcptState::kQueued: break;
    }
    return "";
}

// One line of text: control bytes become spaces, and parentheses brackets, so a reply
// cannot end the "(reply)" early.
std::string printable(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        const auto u = static_cast<unsigned char>(c);
        out += (u < 0x20 || u == 0x7f) ? ' ' : c == '(' ? '[' : c == ')' ? ']' : c;
    }
    return out;
}

} // namespace

std::vector<MailLogLine> outcome_lines(const spool::Envelope& env,
                                       const std::vector<spool::RecipientUpdate>& updates,
                                       const std::vector<MailLogRoute>& routes, UnixMillis now_ms) {
    std::vector<MailLogLine> out;
    std::vector<spool::RcptState> states;
    for (const auto& r : env.recipients) {
        states.push_back(r.state);
    }
    const double delay_s = static_cast<double>(now_ms - env.arrival_ms) / 1000.0;
    for (const auto& u : updates) {
        if (u.index >= env.recipients.size()) {
            continue;
        }
        states[u.index] = u.state;
        const std::string_view status = status_of(u.state);
        if (status.empty()) {
            continue;
        }
        const MailLogRoute route = u.index < routes.size() ? routes[u.index] : MailLogRoute{};
        out.push_back(
            MailLogLine{route.service.empty() ? "deliver" : route.service,
                        fmt::format("{}: to=<{}>, relay={}, delay={:.2f}, dsn={}, status={} ({})",
                                    env.id.text(), printable(env.recipients[u.index].address),
                                    route.relay.empty() ? "none" : printable(route.relay),
                                    delay_s < 0 ? 0.0 : delay_s, dsn_of(u.response, u.state),
                                    status, printable(u.response))});
    }
    bool all_final = true;
    for (const auto s : states) {
        all_final = all_final && spool::is_final(s);
    }
    if (all_final && !out.empty()) {
        out.push_back(MailLogLine{"qmgr", fmt::format("{}: removed", env.id.text())});
    }
    return out;
}

} // namespace spoold::drain
