#include <doctest/doctest.h>

#include <fmt/format.h>

#include <string>

#include "smtp/esmtp_params.hpp"

using namespace spoold;
using namespace spoold::smtp;

namespace {

// One line per outcome, so a table row states the whole result: the values a parse set,
// or the reply refusing it and the reason logged.
std::string refused(const ParamRefusal& r) {
    return fmt::format("{} ({})", r.reply.summary(), r.reason);
}

std::string outcome(const tl::expected<MailParams, ParamRefusal>& r) {
    if (!r) {
        return refused(r.error());
    }
    return fmt::format("size={} 8bitmime={} smtputf8={} ret={} envid={}", r->size,
                       r->eight_bit_mime, r->smtputf8, r->ret, r->envid);
}

std::string outcome(const tl::expected<RcptParams, ParamRefusal>& r) {
    if (!r) {
        return refused(r.error());
    }
    return fmt::format("notify={} orcpt={}", r->notify, r->orcpt);
}

constexpr const char* kNone = "size=0 8bitmime=false smtputf8=false ret= envid=";

} // namespace

TEST_CASE("MAIL FROM parameters: each input gives its values or its exact refusal") {
    struct Row {
        std::string params;
        bool esmtp;
        std::string expected;
    };
    const std::string envid_100(100, 'e');
    const Row rows[] = {
        {"", true, kNone},
        {"", false, kNone},
        {"SIZE=10", false, "555 5.5.4 Parameters need EHLO (syntax)"},
        {"SIZE=1000", true, "size=1000 8bitmime=false smtputf8=false ret= envid="},
        {"size=1000", true, "size=1000 8bitmime=false smtputf8=false ret= envid="},
        {"SIZE=0", true, kNone},
        {"SIZE=9999999999999999999", true,
         "size=9999999999999999999 8bitmime=false smtputf8=false ret= envid="},
        {"SIZE=10000000000000000000", true, "501 5.5.4 Bad SIZE parameter (syntax)"},
        {"SIZE=12x", true, "501 5.5.4 Bad SIZE parameter (syntax)"},
        {"SIZE=+1", true, "501 5.5.4 Bad SIZE parameter (syntax)"},
        {"SIZE=-1", true, "501 5.5.4 Bad SIZE parameter (syntax)"},
        {"SIZE", true, "501 5.5.4 Bad SIZE parameter (syntax)"},
        {"SIZE=", true, "501 5.5.4 Bad parameter syntax (syntax)"},
        {"BODY=8BITMIME", true, "size=0 8bitmime=true smtputf8=false ret= envid="},
        {"body=8bitmime", true, "size=0 8bitmime=true smtputf8=false ret= envid="},
        {"BODY=7BIT", true, kNone},
        {"BODY=BINARYMIME", true, "555 5.5.4 Unsupported BODY type (unsupported-body)"},
        {"BODY", true, "555 5.5.4 Unsupported BODY type (unsupported-body)"},
        {"SMTPUTF8", true, "size=0 8bitmime=false smtputf8=true ret= envid="},
        {"SMTPUTF8=yes", true, "501 5.5.4 SMTPUTF8 takes no value (syntax)"},
        {"RET=FULL", true, "size=0 8bitmime=false smtputf8=false ret=FULL envid="},
        {"RET=hdrs", true, "size=0 8bitmime=false smtputf8=false ret=HDRS envid="},
        {"RET=SOME", true, "501 5.5.4 Bad RET parameter (syntax)"},
        {"RET", true, "501 5.5.4 Bad RET parameter (syntax)"},
        {"ENVID=QQ314159", true, "size=0 8bitmime=false smtputf8=false ret= envid=QQ314159"},
        {"ENVID=id+2B1", true, "size=0 8bitmime=false smtputf8=false ret= envid=id+1"},
        {"ENVID=" + envid_100, true,
         "size=0 8bitmime=false smtputf8=false ret= envid=" + envid_100},
        {"ENVID=" + envid_100 + "e", true, "501 5.5.4 Bad ENVID parameter (syntax)"},
        {"ENVID=bad+zz", true, "501 5.5.4 Bad ENVID parameter (syntax)"},
        {"ENVID=\xc3\xa9", true, "501 5.5.4 Bad ENVID parameter (syntax)"},
        {"ENVID", true, "501 5.5.4 Bad ENVID parameter (syntax)"},
        {"AUTH=<>", true, "555 5.5.4 Unsupported parameter AUTH (unsupported-parameter)"},
        {"xfoo=1", true, "555 5.5.4 Unsupported parameter XFOO (unsupported-parameter)"},
        {"NOTIFY=NEVER", true, "555 5.5.4 Unsupported parameter NOTIFY (unsupported-parameter)"},
        {"=x", true, "501 5.5.4 Bad parameter syntax (syntax)"},
        {"SIZE=1=2", true, "501 5.5.4 Bad parameter syntax (syntax)"},
        {"SIZE=1 SIZE=2", true, "501 5.5.4 Duplicate parameter SIZE (syntax)"},
        {"BODY=7BIT body=8BITMIME", true, "501 5.5.4 Duplicate parameter BODY (syntax)"},
        {"SMTPUTF8 SMTPUTF8", true, "501 5.5.4 Duplicate parameter SMTPUTF8 (syntax)"},
        // The value is judged before the repeat, and the first bad parameter answers.
        {"SIZE=1 SIZE=x", true, "501 5.5.4 Bad SIZE parameter (syntax)"},
        {"XFOO SIZE=x", true, "555 5.5.4 Unsupported parameter XFOO (unsupported-parameter)"},
        {"SIZE=x XFOO", true, "501 5.5.4 Bad SIZE parameter (syntax)"},
        {"SIZE=100  BODY=8BITMIME", true, "size=100 8bitmime=true smtputf8=false ret= envid="},
        {"SIZE=100 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=id+2B1", true,
         "size=100 8bitmime=true smtputf8=true ret=HDRS envid=id+1"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.params);
        CAPTURE(row.esmtp);
        CHECK(outcome(parse_mail_params(row.params, row.esmtp)) == row.expected);
    }
}

TEST_CASE("MAIL FROM's XSPOOLD-XFER carries a claim of class, arrival and expiry, or is refused") {
    const auto ok = parse_mail_params("BODY=8BITMIME xspoold-xfer=bulk,1700000000000,0", true);
    REQUIRE(ok);
    CHECK(ok->eight_bit_mime);
    REQUIRE(ok->xfer);
    CHECK(*ok->xfer == XferClaim{"bulk", 1'700'000'000'000, 0});
    CHECK_FALSE(parse_mail_params("SIZE=10", true)->xfer);
    struct Row {
        std::string params;
        std::string expected;
    };
    const Row rows[] = {
        {"XSPOOLD-XFER=bulk,1", "501 5.5.4 Bad XSPOOLD-XFER parameter (syntax)"},
        {"XSPOOLD-XFER", "501 5.5.4 Bad XSPOOLD-XFER parameter (syntax)"},
        {"XSPOOLD-XFER=bulk,1,2 XSPOOLD-XFER=bulk,1,2",
         "501 5.5.4 Duplicate parameter XSPOOLD-XFER (syntax)"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.params);
        CHECK(outcome(parse_mail_params(row.params, true)) == row.expected);
    }
}

TEST_CASE("RCPT TO parameters: each input gives its values or its exact refusal") {
    struct Row {
        std::string params;
        bool esmtp;
        bool smtputf8;
        std::string expected;
    };
    const Row rows[] = {
        {"", true, false, "notify=0 orcpt="},
        {"", false, false, "notify=0 orcpt="},
        {"NOTIFY=SUCCESS", false, false, "555 5.5.4 Parameters need EHLO (syntax)"},
        {"NOTIFY=NEVER", true, false, "notify=1 orcpt="},
        {"NOTIFY=SUCCESS,FAILURE", true, false, "notify=6 orcpt="},
        {"notify=delay", true, false, "notify=8 orcpt="},
        {"NOTIFY=NEVER,SUCCESS", true, false, "501 5.5.4 Bad NOTIFY parameter (syntax)"},
        {"NOTIFY=SUCCESS,SUCCESS", true, false, "501 5.5.4 Bad NOTIFY parameter (syntax)"},
        {"NOTIFY", true, false, "501 5.5.4 Bad NOTIFY parameter (syntax)"},
        {"NOTIFY=SUCCESS NOTIFY=DELAY", true, false,
         "501 5.5.4 Duplicate parameter NOTIFY (syntax)"},
        // The repeat is judged before the value.
        {"NOTIFY=SUCCESS NOTIFY=bad", true, false, "501 5.5.4 Duplicate parameter NOTIFY (syntax)"},
        {"ORCPT=rfc822;user+2Bx@example.com", true, false,
         "notify=0 orcpt=rfc822;user+x@example.com"},
        {"ORCPT=user@example.com", true, false, "501 5.5.4 Bad ORCPT parameter (syntax)"},
        {"ORCPT", true, false, "501 5.5.4 Bad ORCPT parameter (syntax)"},
        {"ORCPT=rfc822;a@b.example ORCPT=rfc822;c@d.example", true, false,
         "501 5.5.4 Duplicate parameter ORCPT (syntax)"},
        {"ORCPT=rfc822;a@b.example ORCPT=bad", true, false,
         "501 5.5.4 Duplicate parameter ORCPT (syntax)"},
        // UTF-8 in a value only under SMTPUTF8, and then only where the value allows it.
        {"ORCPT=utf-8;j\xc3\xb6rg@example.com", true, false,
         "501 5.5.4 Bad parameter syntax (syntax)"},
        {"ORCPT=utf-8;j\xc3\xb6rg@example.com", true, true,
         "notify=0 orcpt=utf-8;j\xc3\xb6rg@example.com"},
        {"ORCPT=rfc822;j\xc3\xb6rg@example.com", true, true,
         "501 5.5.4 Bad ORCPT parameter (syntax)"},
        {"XFOO", true, false, "555 5.5.4 Unsupported parameter XFOO (unsupported-parameter)"},
        {"SIZE=1", true, false, "555 5.5.4 Unsupported parameter SIZE (unsupported-parameter)"},
        {"NOTIFY=FAILURE XFOO", true, false,
         "555 5.5.4 Unsupported parameter XFOO (unsupported-parameter)"},
        {"NOTIFY=FAILURE,DELAY ORCPT=rfc822;user+2Bx@example.com", true, false,
         "notify=12 orcpt=rfc822;user+x@example.com"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.params);
        CAPTURE(row.esmtp);
        CAPTURE(row.smtputf8);
        CHECK(outcome(parse_rcpt_params(row.params, row.esmtp, row.smtputf8)) == row.expected);
    }
}

TEST_CASE("sizes for SIZE= and BDAT are 1 to 19 decimal digits and nothing else") {
    struct Row {
        const char* text;
        std::optional<std::uint64_t> value;
    };
    const Row rows[] = {
        {"0", 0},
        {"123", 123},
        {"0000000000000000001", 1},
        {"9999999999999999999", 9999999999999999999ULL},
        {"10000000000000000000", std::nullopt},
        {"", std::nullopt},
        {"12x", std::nullopt},
        {"+1", std::nullopt},
        {"-1", std::nullopt},
        {" 1", std::nullopt},
        {"1 ", std::nullopt},
        {"0x10", std::nullopt},
    };
    for (const auto& row : rows) {
        CAPTURE(row.text);
        CHECK(parse_decimal(row.text) == row.value);
    }
}
