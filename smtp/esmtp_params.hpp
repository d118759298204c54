// The ESMTP parameters of MAIL FROM (SIZE, BODY, SMTPUTF8, RET, ENVID, XSPOOLD-XFER) and RCPT TO
// (NOTIFY, ORCPT): the text after the path -> the values they set, or the exact reply refusing
// them. Pure: no session state, no limits, no intake; the session decides what the values mean.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

#include "common/reply.hpp"
#include "common/xfer_claim.hpp"

namespace spoold::smtp {

// A refused parameter: the reply to give (before the session strips the enhanced code
// from a HELO client) and the reason for the log line.
struct ParamRefusal {
    Reply reply;
    std::string reason; // "syntax", "unsupported-body", "unsupported-parameter"
};

struct MailParams {
    std::uint64_t size = 0; // SIZE=, 0 when not given
    bool eight_bit_mime = false;
    bool smtputf8 = false;
    std::string ret;   // "FULL" / "HDRS" / ""
    std::string envid; // xtext-decoded
    // A peer's claim of class, arrival and expiry (spoolctl xfer); parsed from anyone,
    // honoured only for xfer.peers, by the daemon's classification.
    std::optional<XferClaim> xfer;
};

struct RcptParams {
    std::uint8_t notify = 0; // address::kNotify* bits, 0 when not given
    std::string orcpt;       // "addr-type;decoded"
};

// `text` is what follows MAIL FROM's path; `esmtp` says the client greeted with EHLO
// (parameters need it). UTF-8 is allowed in values: SMTPUTF8 may be among them.
tl::expected<MailParams, ParamRefusal> parse_mail_params(std::string_view text, bool esmtp);

// `text` is what follows RCPT TO's path; `smtputf8` says MAIL FROM had SMTPUTF8.
tl::expected<RcptParams, ParamRefusal> parse_rcpt_params(std::string_view text, bool esmtp,
                                                         bool smtputf8);

// A decimal size as SIZE= and BDAT give it: digits only, at most 19 (no overflow).
std::optional<std::uint64_t> parse_decimal(std::string_view text);

} // namespace spoold::smtp
