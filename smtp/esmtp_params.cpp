#include "smtp/esmtp_params.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <vector>

#include "common/address.hpp"

namespace spoold::smtp {
namespace {

using address::iequals;

// Every parameter refusal is 5.5.4 (RFC 3463: invalid command arguments).
ParamRefusal refusal(int code, std::string_view text, std::string_view reason = "syntax") {
    return ParamRefusal{make_reply(code, "5.5.4", text), std::string(reason)};
}

tl::unexpected<ParamRefusal> refuse(int code, std::string_view text) {
    return tl::unexpected(refusal(code, text));
}

tl::unexpected<ParamRefusal> unsupported(std::string_view keyword) {
    return tl::unexpected(
        refusal(555, fmt::format("Unsupported parameter {}", keyword), "unsupported-parameter"));
}

tl::unexpected<ParamRefusal> duplicate(std::string_view keyword) {
    return refuse(501, fmt::format("Duplicate parameter {}", keyword));
}

// The checks both verbs make before looking at any keyword.
tl::expected<std::vector<address::EsmtpParam>, ParamRefusal>
split_params(std::string_view text, bool esmtp, bool allow_utf8) {
    if (!text.empty() && !esmtp) {
        return refuse(555, "Parameters need EHLO");
    }
    auto params = address::parse_esmtp_params(text, allow_utf8);
    if (!params) {
        return refuse(501, "Bad parameter syntax");
    }
    return std::move(*params);
}

// MAIL's keywords; each may be given once, and its index is its bit in the repeat check.
enum MailKeyword : std::uint8_t { kSize, kBody, kSmtpUtf8, kRet, kEnvid, kXfer };
constexpr std::array<std::string_view, 6> kMailKeywords{"SIZE", "BODY",  "SMTPUTF8",
                                                        "RET",  "ENVID", kXferParam};

// Reads one MAIL parameter's value into `out`; a refusal when the value is wrong.
std::optional<ParamRefusal> apply_mail_param(MailKeyword keyword, const address::EsmtpParam& p,
                                             MailParams& out) {
    switch (keyword) {
    case kSize: {
        const auto n = p.has_value ? parse_decimal(p.value) : std::nullopt;
        if (!n) {
            return refusal(501, "Bad SIZE parameter");
        }
        out.size = *n;
        return std::nullopt;
    }
    case kBody:
        if (iequals(p.value, "8BITMIME")) {
            out.eight_bit_mime = true;
        } else if (!iequals(p.value, "7BIT")) {
            return refusal(555, "Unsupported BODY type", "unsupported-body");
        }
        return std::nullopt;
    case kSmtpUtf8:
        if (p.has_value) {
            return refusal(501, "SMTPUTF8 takes no value");
        }
        out.smtputf8 = true;
        return std::nullopt;
    case kRet:
        if (iequals(p.value, "FULL")) {
            out.ret = "FULL";
        } else if (iequals(p.value, "HDRS")) {
            out.ret = "HDRS";
        } else {
            return refusal(501, "Bad RET parameter");
        }
        return std::nullopt;
    case kEnvid: {
        auto envid = p.has_value ? address::parse_envid(p.value) : std::nullopt;
        if (!envid) {
            return refusal(501, "Bad ENVID parameter");
        }
        out.envid = std::move(*envid);
        return std::nullopt;
    }
    case kXfer: {
        auto claim = p.has_value ? parse_xfer_claim(p.value) : std::nullopt;
        if (!claim) {
            return refusal(501, fmt::format("Bad {} parameter", kXferParam));
        }
        out.xfer = std::move(*claim);
        return std::nullopt;
    }
    }
    return std::nullopt;
}

} // namespace

tl::expected<MailParams, ParamRefusal> parse_mail_params(std::string_view text, bool esmtp) {
    const auto params = split_params(text, esmtp, true);
    if (!params) {
        return tl::unexpected(params.error());
    }
    MailParams out;
    std::uint32_t seen = 0;
    for (const auto& p : *params) {
        const auto* const known = std::find(kMailKeywords.begin(), kMailKeywords.end(), p.keyword);
        if (known == kMailKeywords.end()) {
            return unsupported(p.keyword);
        }
        const auto keyword = static_cast<MailKeyword>(known - kMailKeywords.begin());
        // The value is judged before the repeat: "SIZE=1 SIZE=x" is a bad SIZE.
        if (auto refusal = apply_mail_param(keyword, p, out)) {
            return tl::unexpected(std::move(*refusal));
        }
        const std::uint32_t bit = 1U << keyword;
        if ((seen & bit) != 0) {
            return duplicate(p.keyword);
        }
        seen |= bit;
    }
    return out;
}

tl::expected<RcptParams, ParamRefusal> parse_rcpt_params(std::string_view text, bool esmtp,
                                                         bool smtputf8) {
    const auto params = split_params(text, esmtp, smtputf8);
    if (!params) {
        return tl::unexpected(params.error());
    }
    RcptParams out;
    bool have_notify = false;
    bool have_orcpt = false;
    for (const auto& p : *params) {
        const bool notify = p.keyword == "NOTIFY";
        if (!notify && p.keyword != "ORCPT") {
            return unsupported(p.keyword);
        }
        // The repeat is judged before the value: "NOTIFY=SUCCESS NOTIFY=x" is a repeat.
        bool& have = notify ? have_notify : have_orcpt;
        if (have) {
            return duplicate(p.keyword);
        }
        have = true;
        if (notify) {
            const auto bits = p.has_value ? address::parse_notify(p.value) : std::nullopt;
            if (!bits) {
                return refuse(501, "Bad NOTIFY parameter");
            }
            out.notify = *bits;
        } else {
            auto orcpt = p.has_value ? address::parse_orcpt(p.value, smtputf8) : std::nullopt;
            if (!orcpt) {
                return refuse(501, "Bad ORCPT parameter");
            }
            out.orcpt = std::move(*orcpt);
        }
    }
    return out;
}

std::optional<std::uint64_t> parse_decimal(std::string_view text) {
    // Twenty digits could overflow; SIZE and BDAT never need that many.
    constexpr std::size_t kMaxDigits = 19;
    if (text.empty() || text.size() > kMaxDigits) {
        return std::nullopt;
    }
    std::uint64_t v = 0;
    const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec != std::errc() || p != text.data() + text.size()) {
        return std::nullopt;
    }
    return v;
}

} // namespace spoold::smtp
