// The drain's lines for logging.format: postfix, in Postfix's words so that pflogsumm and
// the other tools admins have read them: per recipient outcome "to=<...>, relay=...,
// delay=..., dsn=..., status=sent|deferred|bounced|expired (reply)", and "removed" when a
// message leaves the spool. It builds text only; common/log writes it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

struct MailLogLine {
    std::string service; // the Postfix program it stands for: "lmtp", "smtp", "virtual", "qmgr"
    std::string text;    // "QUEUEID: to=<...>, ..."
};

// How a recipient went out: the Postfix service and the relay (the mailstore's name).
struct MailLogRoute {
    std::string service;
    std::string relay;
};

// The lines for `updates` of `env` (committed), `routes` indexed by recipient index. An
// update that is no outcome (still queued: the store was in trouble) gets no line.
std::vector<MailLogLine> outcome_lines(const spool::Envelope& env,
                                       const std::vector<spool::RecipientUpdate>& updates,
                                       const std::vector<MailLogRoute>& routes, UnixMillis now_ms);

} // namespace spoold::drain
