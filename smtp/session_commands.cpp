// The session's commands: the dispatch from a command line's verb, and the greeting and
// envelope commands (EHLO/HELO, MAIL, RCPT, RSET, STARTTLS). DATA and BDAT, which start a
// message's content, are in session_data.cpp; what the filters' verdicts do, session_filters.cpp.
#include <fmt/format.h>

#include "common/address.hpp"
#include "common/log.hpp"
#include "smtp/command_line.hpp"
#include "smtp/esmtp_params.hpp"
#include "smtp/session.hpp"

namespace spoold::smtp {

void Session::handle_command(std::string_view line) {
    if (has_control(line)) {
        error(500, "5.5.2", "Syntax error: control characters in command", "control-characters");
        return;
    }
    const CommandLine cmd = parse_command_line(line);
    const std::string_view arg = cmd.arg;
    if (access_denied_ && cmd.verb != Verb::kQuit) {
        // RFC 5321 3.1: after a 554 greeting only QUIT is served.
        error(503, "5.7.0", "Error: access denied", "access-denied");
        return;
    }
    switch (cmd.verb) {
    case Verb::kEhlo: cmd_ehlo(arg, true); return;
    case Verb::kHelo: cmd_ehlo(arg, false); return;
    case Verb::kMail: cmd_mail(arg); return;
    case Verb::kRcpt: cmd_rcpt(arg); return;
    case Verb::kData: cmd_data(arg); return;
    case Verb::kBdat: cmd_bdat(arg); return;
    case Verb::kRset: cmd_rset(arg); return;
    case Verb::kNoop: reply(250, "2.0.0", "OK"); return;
    case Verb::kQuit:
        reply(221, "2.0.0", "Bye");
        close();
        return;
    case Verb::kVrfy:
        if (arg.empty()) {
            error(501, "5.5.4", "Syntax: VRFY address", "syntax");
        } else {
            reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
        }
        return;
    case Verb::kExpn: error(502, "5.5.1", "EXPN not supported", "expn"); return;
    case Verb::kHelp: reply(214, "2.0.0", help_text()); return;
    case Verb::kStartTls: cmd_starttls(arg); return;
    case Verb::kProxy: refuse_proxy_header(); return;
    case Verb::kUnknown: break;
    }
    error(500, "5.5.1", "Command unrecognized", "unknown-command");
}

void Session::refuse_proxy_header() {
    // A PROXY header on a listener without the PROXY protocol, or a second one: an
    // attempt to pass off another address as the client's.
    first_input_ = false;
    error(554, "5.7.1", "PROXY protocol not accepted from your address", "proxy-untrusted");
    close();
}

void Session::cmd_ehlo(std::string_view arg, bool extended) {
    const std::string_view name = arg.substr(0, arg.find(' '));
    if (name.empty()) {
        error(501, "5.5.4", extended ? "Syntax: EHLO hostname" : "Syntax: HELO hostname", "syntax");
        return;
    }
    drop_message();
    reset_transaction();
    helo_ = std::string(name);
    esmtp_ = extended;
    if (filters_active()) {
        pending_extended_ = extended;
        ask_filters(FilterStage::kHelo,
                    FilterHelo{helo_, tls_active_ ? tls_.version : "",
                               tls_active_ ? tls_.cipher : "", tls_active_ ? tls_.bits : 0});
        return;
    }
    ehlo_reply(extended);
}

void Session::ehlo_reply(bool extended) {
    if (!extended) {
        reply(250, "", settings_.hostname);
        return;
    }
    Reply r{250, "", {settings_.hostname}};
    r.lines.emplace_back("PIPELINING");
    r.lines.push_back(fmt::format("SIZE {}", settings_.limits.max_message_size));
    r.lines.emplace_back("8BITMIME");
    r.lines.emplace_back("SMTPUTF8");
    r.lines.emplace_back("CHUNKING");
    r.lines.emplace_back("DSN");
    r.lines.emplace_back("ENHANCEDSTATUSCODES");
    if (settings_.starttls_offered && !tls_active_) {
        r.lines.emplace_back("STARTTLS");
    }
    out_.emplace_back(std::move(r));
}

void Session::cmd_mail(std::string_view arg) {
    const auto from = after_prefix(arg, "FROM:");
    if (!from) {
        error(501, "5.5.4", "Syntax: MAIL FROM:<address>", "syntax");
        return;
    }
    if (helo_.empty()) {
        error(503, "5.5.1", "Send HELO/EHLO first", "sequence");
        return;
    }
    if (have_mail_) {
        error(503, "5.5.1", "Nested MAIL command", "sequence");
        return;
    }
    if (refusal_) {
        // A filter refused the connection or the HELO: Sendmail and Postfix say it here.
        error(*refusal_, "filter-refused");
        return;
    }
    // UTF-8 is allowed while parsing; whether SMTPUTF8 was given is known only from
    // the parameters that follow the path.
    const auto path = address::parse_path(*from, {.allow_null = true, .allow_utf8 = true});
    if (!path) {
        error(501, "5.1.7",
              path.error() == address::PathError::kTooLong ? "Sender address too long"
                                                           : "Bad sender address syntax",
              "bad-sender");
        return;
    }
    auto params = parse_mail_params(path->rest, esmtp_);
    if (!params) {
        error(params.error().reply, params.error().reason);
        return;
    }
    MessageInfo info;
    info.mail_from = path->address;
    info.mail_params = std::string(path->rest);
    info.eight_bit_mime = params->eight_bit_mime;
    info.smtputf8 = params->smtputf8;
    info.ret = std::move(params->ret);
    info.envid = std::move(params->envid);
    info.xfer = std::move(params->xfer);
    if (path->non_ascii && !info.smtputf8) {
        error(553, "5.6.7", "Non-ASCII sender address needs SMTPUTF8", "non-ascii");
        return;
    }
    if (params->size > settings_.limits.max_message_size) {
        error(552, "5.3.4", "Message size exceeds fixed maximum message size", "size-declared");
        return;
    }
    if (auto admitted = intake_.admit(); !admitted) {
        local_error(reply_for_local_error(admitted.error()), admitted.error().describe());
        return;
    }
    pending_info_ = std::move(info);
    pending_size_ = params->size;
    if (filters_active()) {
        filters_txn_open_ = true;
        ask_filters(FilterStage::kMail,
                    FilterMail{pending_info_.mail_from, split_params(pending_info_.mail_params)});
        return;
    }
    accept_mail();
}

void Session::accept_mail() {
    have_mail_ = true;
    declared_size_ = pending_size_;
    info_ = std::move(pending_info_);
    pending_info_ = MessageInfo{};
    reply(250, "2.1.0", "Sender OK");
}

void Session::cmd_rcpt(std::string_view arg) {
    const auto to = after_prefix(arg, "TO:");
    if (!to) {
        error(501, "5.5.4", "Syntax: RCPT TO:<address>", "syntax");
        return;
    }
    if (!have_mail_) {
        error(503, "5.5.1", "Need MAIL command", "sequence");
        return;
    }
    if (info_.recipients.size() >= settings_.limits.max_recipients) {
        local_error(make_reply(452, "4.5.3", "Too many recipients"), "too-many-recipients");
        return;
    }
    const auto path = address::parse_path(
        *to, {.allow_null = false, .allow_utf8 = info_.smtputf8, .allow_postmaster = true});
    if (!path) {
        if (path.error() == address::PathError::kNonAscii) {
            error(553, "5.6.7", "Non-ASCII recipient address needs SMTPUTF8", "non-ascii");
        } else {
            error(501, "5.1.3", "Bad recipient address syntax", "bad-recipient");
        }
        return;
    }
    auto params = parse_rcpt_params(path->rest, esmtp_, info_.smtputf8);
    if (!params) {
        error(params.error().reply, params.error().reason);
        return;
    }
    RecipientInfo rcpt;
    rcpt.address = path->address;
    if (rcpt.address.find('@') == std::string::npos) {
        // RFC 5321 4.1.1.3: "<Postmaster>" without a domain means ours.
        rcpt.address = "postmaster@" + settings_.hostname;
    }
    rcpt.notify = params->notify;
    rcpt.orcpt = std::move(params->orcpt);
    if (auto admitted = intake_.admit(); !admitted) {
        local_error(reply_for_local_error(admitted.error()), admitted.error().describe());
        return;
    }
    switch (intake_.check_recipient(rcpt.address)) {
    case RecipientVerdict::kAccept: break;
    case RecipientVerdict::kRelayDenied:
        error(550, "5.7.1", "Relay access denied", "relay-denied to=" + log::quote(rcpt.address));
        return;
    case RecipientVerdict::kUnknownUser:
        error(550, "5.1.1", "Recipient address rejected: user unknown",
              "unknown-user to=" + log::quote(rcpt.address));
        return;
    case RecipientVerdict::kTempFail:
        local_error(make_reply(451, "4.3.0",
                               "Recipient verification temporarily unavailable, try again later"),
                    "recipient-tempfail to=" + log::quote(rcpt.address));
        return;
    }
    for (const auto& have : info_.recipients) {
        if (have.address == rcpt.address) {
            // One copy per address: a repeat would be delivered twice.
            reply(250, "2.1.5", "Recipient OK (duplicate)");
            return;
        }
    }
    pending_rcpt_ = std::move(rcpt);
    if (filters_for_message()) {
        ask_filters(FilterStage::kRcpt,
                    FilterRcpt{pending_rcpt_.address, split_params(path->rest)});
        return;
    }
    accept_rcpt();
}

void Session::accept_rcpt() {
    info_.recipients.push_back(std::move(pending_rcpt_));
    pending_rcpt_ = RecipientInfo{};
    reply(250, "2.1.5", "Recipient OK");
}

void Session::cmd_rset(std::string_view arg) {
    if (!arg.empty()) {
        error(501, "5.5.4", "Syntax: RSET", "syntax");
        return;
    }
    drop_message();
    reset_transaction();
    reply(250, "2.0.0", "OK");
}

void Session::cmd_starttls(std::string_view arg) {
    if (!arg.empty()) {
        error(501, "5.5.4", "Syntax: STARTTLS", "syntax");
        return;
    }
    if (!settings_.starttls_offered || tls_active_) {
        error(502, "5.5.1", "STARTTLS not available", "starttls-unavailable");
        return;
    }
    reply(220, "2.0.0", "Ready to start TLS");
    // RFC 3207 4.2 and CVE-2011-0411: whatever the client sent after STARTTLS in the
    // clear must not be executed inside the TLS session.
    in_pos_ = in_.size();
    drop_message();
    reset_transaction();
    helo_.clear();
    esmtp_ = false;
    state_ = State::kTls;
    out_.emplace_back(StartTls{});
}

Actions Session::on_tls_established(TlsInfo tls) {
    if (state_ == State::kTls) {
        tls_active_ = true;
        tls_ = std::move(tls);
        state_ = State::kCommand;
        pump();
    }
    return take_actions();
}

} // namespace spoold::smtp
