#include "smtp/session.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "common/address.hpp"
#include "common/date.hpp"
#include "common/log.hpp"
#include "common/text.hpp"
#include "smtp/esmtp_params.hpp"
#include "smtp/proxy_protocol.hpp"

namespace spoold::smtp {
namespace {

using address::iequals;

// ESMTP parameters as filters receive them: one string per parameter.
std::vector<std::string> split_params(std::string_view text) {
    std::vector<std::string> out;
    while (!text.empty()) {
        const std::size_t sp = text.find(' ');
        if (sp != 0) {
            out.emplace_back(text.substr(0, sp));
        }
        if (sp == std::string_view::npos) {
            break;
        }
        text.remove_prefix(sp + 1);
    }
    return out;
}

// Commands and arguments are printable ASCII (and UTF-8 under SMTPUTF8); a control
// byte in a command line is garbage or an attack on whoever logs it.
bool has_control(std::string_view line) {
    for (const char c : line) {
        const auto u = static_cast<unsigned char>(c);
        if ((u < 0x20 && c != '\t') || u == 0x7f) {
            return true;
        }
    }
    return false;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

// Text from the client (HELO) or the TLS library as it goes into the Received: header:
// readable, and unable to break the header's structure (no parentheses, quotes,
// backslashes or semicolons; spaces only where the text is a comment).
std::string sanitize(std::string_view text, bool allow_space) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        const auto u = static_cast<unsigned char>(c);
        const bool ok =
            (u > 0x20 && u < 0x7f && c != '(' && c != ')' && c != '\\' && c != '"' && c != ';') ||
            u >= 0x80 || (allow_space && c == ' ');
        out += ok ? c : '_';
    }
    return out;
}

} // namespace

std::string TlsInfo::describe() const {
    return fmt::format("version={} cipher={} bits={}", version, cipher, bits);
}

Session::Session(SessionSettings settings, Intake& intake)
    : settings_(std::move(settings)), intake_(intake), tls_active_(settings_.tls_active),
      tls_(settings_.tls) {}

Session::~Session() { drop_message(); }

Actions Session::greeting() {
    if (filters_active()) {
        ask_filters(FilterStage::kConnect,
                    FilterConnect{settings_.client_addr, settings_.client_port,
                                  settings_.local_addr, settings_.local_port});
    } else {
        greet();
    }
    return take_actions();
}

void Session::greet() {
    out_.emplace_back(make_reply(220, "", fmt::format("{} ESMTP spoold", settings_.hostname)));
}

Actions Session::take_actions() {
    Actions a;
    a.swap(out_);
    return a;
}

Actions Session::feed(std::string_view bytes) {
    if (!closed_) {
        in_.append(bytes);
        pump();
    }
    return take_actions();
}

bool Session::wants_input() const {
    if (closed_ || state_ == State::kFinishing || state_ == State::kCommit ||
        state_ == State::kTls || state_ == State::kFilter) {
        return false;
    }
    const bool waiting = append_in_flight_ || filter_stage_ != FilterStage::kNone;
    if (waiting && (state_ == State::kCommand || body_.size() >= kAppendChunk)) {
        return false;
    }
    return true;
}

bool Session::in_data() const { return state_ == State::kContent || state_ == State::kFinishing; }

bool Session::busy() const { return append_in_flight_ || state_ == State::kCommit; }

void Session::pump() {
    while (!closed_) {
        const std::size_t pos = in_pos_;
        const State state = state_;
        switch (state_) {
        case State::kCommand:
            // Commands wait for an append of the previous BDAT chunk: RSET or QUIT must
            // not drop a message the intake is still writing to (or a filter reading).
            if (!append_in_flight_ && filter_stage_ == FilterStage::kNone) {
                handle_command_input();
            }
            break;
        case State::kContent: consume_content(); break;
        case State::kFinishing:
        case State::kCommit:
        case State::kTls:
        case State::kFilter: break;
        }
        if (in_pos_ == pos && state_ == state) {
            break;
        }
    }
    // Keep only the unconsumed tail; give memory back so idle sessions stay small.
    constexpr std::size_t kIdleCapacity = 4096;
    if (in_pos_ >= in_.size()) {
        in_.clear();
        if (in_.capacity() > kIdleCapacity) {
            std::string().swap(in_);
        }
    } else if (in_pos_ > 0) {
        in_.erase(0, in_pos_);
    }
    in_pos_ = 0;
}

bool Session::handle_command_input() {
    const std::string_view avail(in_.data() + in_pos_, in_.size() - in_pos_);
    const std::size_t max_line = settings_.limits.max_line_length;
    if (first_input_) {
        // A binary (v2) PROXY header starts with CRLF CRLF NUL CRLF "QUIT" LF: read as
        // lines it would end the session with a QUIT instead of being refused.
        const std::size_t sig = proxy_v2_signature_prefix(avail);
        if (sig == kProxyV2SignatureBytes) {
            in_pos_ = in_.size();
            refuse_proxy_header();
            return true;
        }
        if (sig == avail.size()) {
            return false; // a prefix of the signature so far
        }
        first_input_ = false;
    }
    const std::size_t nl = avail.find('\n');
    if (nl == std::string_view::npos) {
        if (avail.size() + 2 > max_line) {
            // Drop what we have and skip to the next line end: memory stays bounded.
            if (!skipping_long_line_) {
                skipping_long_line_ = true;
                error(500, "5.5.2", "Line too long", "line-too-long");
            }
            in_pos_ = in_.size();
        }
        return false;
    }
    std::string_view line = avail.substr(0, nl);
    in_pos_ += nl + 1;
    if (skipping_long_line_) {
        skipping_long_line_ = false;
        return true;
    }
    // CRLF is the line end; a bare LF ends a command too (lenient, as Postfix is): the
    // smuggling rule applies to message content, where line ends carry meaning.
    if (!line.empty() && line.back() == '\r') {
        line.remove_suffix(1);
    }
    if (line.size() + 2 > max_line) {
        error(500, "5.5.2", "Line too long", "line-too-long");
        return true;
    }
    handle_command(line);
    return true;
}

void Session::handle_command(std::string_view line) {
    if (has_control(line)) {
        error(500, "5.5.2", "Syntax error: control characters in command", "control-characters");
        return;
    }
    const std::size_t sp = line.find(' ');
    const std::string_view verb = line.substr(0, sp);
    const std::string_view arg =
        sp == std::string_view::npos ? std::string_view() : ascii::trim_right(line.substr(sp + 1));

    if (access_denied_ && !iequals(verb, "QUIT")) {
        // RFC 5321 3.1: after a 554 greeting only QUIT is served.
        error(503, "5.7.0", "Error: access denied", "access-denied");
        return;
    }
    if (iequals(verb, "EHLO")) {
        cmd_ehlo(arg, true);
    } else if (iequals(verb, "HELO")) {
        cmd_ehlo(arg, false);
    } else if (iequals(verb, "MAIL")) {
        cmd_mail(arg);
    } else if (iequals(verb, "RCPT")) {
        cmd_rcpt(arg);
    } else if (iequals(verb, "DATA")) {
        cmd_data(arg);
    } else if (iequals(verb, "BDAT")) {
        cmd_bdat(arg);
    } else if (iequals(verb, "RSET")) {
        cmd_rset(arg);
    } else if (iequals(verb, "NOOP")) {
        reply(250, "2.0.0", "OK");
    } else if (iequals(verb, "QUIT")) {
        reply(221, "2.0.0", "Bye");
        close();
    } else if (iequals(verb, "VRFY")) {
        if (arg.empty()) {
            error(501, "5.5.4", "Syntax: VRFY address", "syntax");
        } else {
            reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery");
        }
    } else if (iequals(verb, "EXPN")) {
        error(502, "5.5.1", "EXPN not supported", "expn");
    } else if (iequals(verb, "HELP")) {
        reply(214, "2.0.0",
              "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS");
    } else if (iequals(verb, "STARTTLS")) {
        cmd_starttls(arg);
    } else if (iequals(verb, "PROXY")) {
        refuse_proxy_header();
    } else {
        error(500, "5.5.1", "Command unrecognized", "unknown-command");
    }
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
    if (!starts_with_ci(arg, "FROM:")) {
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
    std::string_view text = arg.substr(5);
    while (!text.empty() && text.front() == ' ') {
        text.remove_prefix(1); // "MAIL FROM: <a@b>" is common enough to accept
    }
    // UTF-8 is allowed while parsing; whether SMTPUTF8 was given is known only from
    // the parameters that follow the path.
    const auto path = address::parse_path(text, {.allow_null = true, .allow_utf8 = true});
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
    if (!starts_with_ci(arg, "TO:")) {
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
    std::string_view text = arg.substr(3);
    while (!text.empty() && text.front() == ' ') {
        text.remove_prefix(1);
    }
    const auto path = address::parse_path(
        text, {.allow_null = false, .allow_utf8 = info_.smtputf8, .allow_postmaster = true});
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

void Session::cmd_data(std::string_view arg) {
    if (!arg.empty()) {
        error(501, "5.5.4", "Syntax: DATA", "syntax");
        return;
    }
    if (used_bdat_) {
        error(503, "5.5.1", "DATA not allowed after BDAT", "sequence");
        return;
    }
    if (settings_.limits.refuse_early_data && in_pos_ < in_.size()) {
        // RFC 2920 3.1: DATA ends a pipelined group, and the content may follow only our
        // 354. A client that sends it earlier does not read replies (a spam-bot signature,
        // refused as Postfix's smtpd_forbid_unauth_pipelining does).
        error(554, "5.5.0", "Error: SMTP protocol synchronization", "early-data");
        close();
        return;
    }
    if (!ready_for_content()) {
        return;
    }
    if (filters_for_message()) {
        pending_bdat_ = false;
        ask_filters(FilterStage::kData, FilterData{message_->id()});
        return;
    }
    start_content();
}

void Session::start_content() {
    state_ = State::kContent;
    decoder_.begin_data();
    out_.emplace_back(make_reply(354, "", "End data with <CR><LF>.<CR><LF>"));
}

// DATA and BDAT both need a sender, at least one accepted recipient and a message
// from the intake; on false the reply is already queued.
bool Session::ready_for_content() {
    if (!have_mail_) {
        error(503, "5.5.1", "Need MAIL command", "sequence");
        return false;
    }
    if (info_.recipients.empty()) {
        error(554, "5.5.1", "No valid recipients", "no-recipients");
        return false;
    }
    return ensure_message();
}

void Session::cmd_bdat(std::string_view arg) {
    const std::size_t sp = arg.find(' ');
    const auto size = parse_decimal(arg.substr(0, sp));
    const std::string_view rest =
        sp == std::string_view::npos ? std::string_view() : arg.substr(sp + 1);
    if (!size || (!rest.empty() && !iequals(rest, "LAST"))) {
        // Without a size we cannot know where the chunk ends: its bytes will read as
        // (bad) commands, and the error cap ends that.
        error(501, "5.5.4", "Syntax: BDAT size [LAST]", "syntax");
        return;
    }
    state_ = State::kContent;
    // Refusals are said now, before the chunk arrives; the reply order is the same
    // and the chunk's bytes are then read and dropped.
    if (!esmtp_) {
        error(503, "5.5.1", "BDAT needs EHLO", "sequence");
        decoder_.skip_chunk(*size);
        return;
    }
    if (!ready_for_content()) {
        decoder_.skip_chunk(*size);
        return;
    }
    if (!used_bdat_ && filters_for_message()) {
        // The filters hear of the first chunk as DATA (as Postfix tells them).
        pending_bdat_ = true;
        pending_chunk_ = *size;
        pending_last_ = !rest.empty();
        ask_filters(FilterStage::kData, FilterData{message_->id()});
        return;
    }
    used_bdat_ = true;
    decoder_.begin_chunk(*size, !rest.empty());
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

bool Session::ensure_message() {
    if (message_) {
        return true;
    }
    auto begun = intake_.begin();
    if (!begun) {
        local_error(reply_for_local_error(begun.error()), begun.error().describe());
        return false;
    }
    message_ = std::move(*begun);
    size_ = 0;
    decoder_.reset();
    too_big_ = false;
    append_failed_ = false;
    body_.clear();
    head_ = HeaderSection();
    head_.add_own("Received", received_header());
    return true;
}

std::string Session::received_header() const {
    const bool tls = tls_active_;
    std::string proto;
    if (info_.smtputf8) {
        proto = tls ? "UTF8SMTPS" : "UTF8SMTP";
    } else if (esmtp_) {
        proto = tls ? "ESMTPS" : "ESMTP";
    } else {
        proto = "SMTP";
    }
    const std::string& client = settings_.client_addr;
    const std::string literal = client.find(':') != std::string::npos ? "IPv6:" + client : client;
    std::string h = fmt::format("Received: from {} ([{}])\r\n", sanitize(helo_, false), literal);
    if (tls) {
        h += fmt::format("\t(using {})\r\n", sanitize(tls_.describe(), true));
    }
    h += fmt::format("\tby {} (spoold) with {} id {}", settings_.hostname, proto,
                     message_->id().text());
    if (info_.recipients.size() == 1) {
        // Only one recipient is named: listing several would disclose Bcc recipients.
        h += fmt::format("\r\n\tfor <{}>", info_.recipients.front().address);
    }
    h += fmt::format(";\r\n\t{}\r\n", date::rfc5322(settings_.clock->now_ms()));
    return h;
}

// Message bytes the decoder appended to body_: counted against the size limit, and
// dropped once the message is certain to be refused.
void Session::count_content(std::size_t produced) {
    size_ += produced;
    if (size_ > settings_.limits.max_message_size) {
        too_big_ = true;
    }
    if (message_doomed()) {
        body_.clear();
    }
}

// The message will not be committed: its content need not be kept.
bool Session::message_doomed() const {
    return too_big_ || decoder_.refused() || append_failed_ || !message_ || content_refusal_ ||
           discard_msg_ || discard_all_;
}

void Session::maybe_flush() {
    if (append_in_flight_ || filter_stage_ != FilterStage::kNone || !message_ ||
        body_.size() < kAppendChunk) {
        return;
    }
    flush_body();
}

// Hands body_ to the intake and, while they want it, to the filters.
void Session::flush_body() {
    if (filters_for_message()) {
        ask_filters(FilterStage::kContent, FilterBody{body_});
    }
    append_in_flight_ = true;
    AppendBody a{message_.get(), std::move(body_)};
    body_.clear();
    out_.emplace_back(std::move(a));
}

void Session::consume_content() {
    while (state_ == State::kContent) {
        if (body_.size() >= kAppendChunk) {
            maybe_flush();
            if (body_.size() >= kAppendChunk) {
                return; // throttled: the append in flight must finish first
            }
        }
        // Work in slices so the body buffer stays near one chunk.
        const std::string_view avail(in_.data() + in_pos_,
                                     std::min(in_.size() - in_pos_, kAppendChunk));
        DecodeStep step;
        if (head_.ended()) {
            step = decoder_.decode(avail, body_);
        } else {
            scratch_.clear();
            step = decoder_.decode(avail, scratch_);
            take_content(scratch_);
        }
        in_pos_ += step.consumed;
        count_content(step.produced);
        if (step.end != ContentEnd::kNone) {
            maybe_flush();
            content_ended(step.end);
            return;
        }
        if (in_pos_ >= in_.size()) {
            break;
        }
    }
    maybe_flush();
}

// The decoder reached the end of the message or of a BDAT chunk.
void Session::content_ended(ContentEnd end) {
    state_ = State::kCommand;
    switch (end) {
    case ContentEnd::kNone:
    case ContentEnd::kSkipped: return;
    case ContentEnd::kMessage: {
        scratch_.clear();
        const std::size_t completed = decoder_.finish(scratch_);
        take_content(scratch_);
        if (!head_.ended()) {
            head_.finish(body_);
            header_section_ended();
        }
        count_content(completed);
        end_of_content();
        return;
    }
    case ContentEnd::kChunk: break;
    }
    if (too_big_) {
        error(552, "5.3.4", "Message size exceeds fixed maximum message size", "size");
        drop_message();
        reset_transaction();
        return;
    }
    reply(250, "2.0.0", fmt::format("{} octets received", size_));
}

void Session::take_content(std::string_view bytes) {
    if (head_.ended()) {
        body_.append(bytes);
    } else if (head_.feed(bytes, body_)) {
        header_section_ended();
    }
}

void Session::header_section_ended() {
    const std::string& ours =
        settings_.authserv_id.empty() ? settings_.hostname : settings_.authserv_id;
    if (const std::size_t removed = head_.remove_authentication_results(ours); removed > 0) {
        log::info("event=authentication_results_removed client={}{} authserv_id={} count={}",
                  settings_.client_addr, id_field(), log::quote(ours), removed);
    }
    if (filters_for_message() && !message_doomed()) {
        ask_filters(FilterStage::kContent, FilterHeaders{head_.fields_for_filters()});
    }
}

void Session::end_of_content() {
    state_ = State::kFinishing;
    continue_finish();
}

void Session::continue_finish() {
    if (append_in_flight_ || filter_stage_ != FilterStage::kNone) {
        return;
    }
    if (too_big_ || decoder_.refused() || append_failed_) {
        if (too_big_) {
            error(552, "5.3.4", "Message size exceeds fixed maximum message size", "size");
        } else if (decoder_.bare_newline()) {
            error(554, "5.6.0",
                  "Message refused: bare LF or CR in message content (RFC 5321 2.3.8)",
                  "bare-newline");
        } else if (decoder_.nul_byte()) {
            error(554, "5.6.0", "Message refused: NUL byte in message content (RFC 5321 2.3.8)",
                  "nul-byte");
        } else {
            local_error(append_error_, "append-failed");
        }
        drop_message();
        reset_transaction();
        if (!closed_) {
            state_ = State::kCommand;
        }
        return;
    }
    if (content_refusal_) {
        const FilterVerdict refusal = std::move(*content_refusal_);
        filter_refusal(refusal, true);
        drop_message();
        reset_transaction();
        state_ = State::kCommand;
        return;
    }
    if (discard_msg_ || discard_all_) {
        discard_message();
        return;
    }
    if (!body_.empty()) {
        flush_body();
        return;
    }
    if (filters_for_message() && !end_asked_) {
        end_asked_ = true;
        ask_filters(FilterStage::kEnd, FilterEnd{});
        return;
    }
    commit_message(info_);
}

void Session::commit_message(MessageInfo info) {
    info.client_addr = settings_.client_addr;
    info.helo = helo_;
    info.tls = tls_active_ ? tls_.describe() : std::string();
    state_ = State::kCommit;
    out_.emplace_back(CommitMessage{message_.get(), std::move(info), head_.render()});
}

Actions Session::on_append_done(Status status) {
    append_in_flight_ = false;
    if (!status && !append_failed_) {
        append_failed_ = true;
        append_error_ = reply_for_local_error(status.error());
        log::warn("event=append-failed client={} error={}", settings_.client_addr,
                  log::quote(status.error().describe()));
    }
    if (append_failed_) {
        body_.clear();
    }
    if (retired_) {
        // The message was dropped while its append was in flight; now it may go.
        retired_.reset();
    } else if (state_ == State::kFinishing) {
        continue_finish();
    } else {
        maybe_flush();
    }
    pump();
    return take_actions();
}

Actions Session::on_commit_result(Result<CommitInfo> result) {
    if (state_ != State::kCommit) {
        return {};
    }
    const std::string id = message_->id().text();
    if (result) {
        ++messages_;
        if (log::format() == log::Format::kPostfix) {
            // What pflogsumm counts as received: Postfix's smtpd "client=" and qmgr "from=".
            log::mail("smtpd", fmt::format("{}: client=unknown[{}]", id, settings_.client_addr));
            log::mail("qmgr", fmt::format("{}: from=<{}>, size={}, nrcpt={} (queue active)", id,
                                          info_.mail_from, size_, info_.recipients.size()));
        } else {
            log::info("event=accepted id={} client={} from={} size={} class={} rcpts={}", id,
                      settings_.client_addr, log::quote(info_.mail_from), size_,
                      log::quote(result->class_name), info_.recipients.size());
        }
        reply(250, "2.0.0", fmt::format("OK queued as {}", id));
    } else {
        local_error(reply_for_local_error(result.error()),
                    fmt::format("commit-failed: {}", result.error().describe()));
    }
    // Committed, or failed and (by the contract) already gone: no rollback.
    message_.reset();
    reset_transaction();
    if (!closed_) {
        state_ = State::kCommand;
        pump();
    }
    return take_actions();
}

Actions Session::on_timeout() {
    if (!closed_) {
        log::info("event=timeout client={} state={}", settings_.client_addr,
                  in_data() ? "data" : "command");
        reply(421, "4.4.2", fmt::format("{} Error: timeout exceeded", settings_.hostname));
        close();
    }
    return take_actions();
}

Actions Session::on_shutdown() {
    if (!closed_) {
        reply(421, "4.3.2",
              fmt::format("{} Service shutting down, try again later", settings_.hostname));
        close();
    }
    return take_actions();
}

void Session::on_disconnect() {
    closed_ = true;
    drop_message();
}

void Session::reset_transaction() {
    if (filters_txn_open_) {
        filters_txn_open_ = false;
        out_.emplace_back(AbortFilters{});
    }
    filters_done_msg_ = false;
    discard_msg_ = false;
    content_refusal_.reset();
    end_asked_ = false;
    have_mail_ = false;
    info_ = MessageInfo{};
    declared_size_ = 0;
    used_bdat_ = false;
    decoder_.reset();
    head_ = HeaderSection();
    std::string().swap(scratch_);
    body_.clear();
    body_.shrink_to_fit();
    size_ = 0;
    too_big_ = false;
    append_failed_ = false;
}

void Session::drop_message() {
    if (!message_ || state_ == State::kCommit) {
        // A commit in flight is never rolled back: its outcome is the intake's to report.
        return;
    }
    message_->rollback();
    if (append_in_flight_) {
        retired_ = std::move(message_);
    }
    message_.reset();
}

void Session::reply(int code, std::string_view enhanced, std::string_view text) {
    // RFC 2034: enhanced codes only once the client has seen ENHANCEDSTATUSCODES.
    out_.emplace_back(make_reply(code, esmtp_ ? enhanced : std::string_view(), text));
}

void Session::reply(Reply r) {
    if (!esmtp_) {
        r.enhanced.clear();
    }
    out_.emplace_back(std::move(r));
}

void Session::error(int code, std::string_view enhanced, std::string_view text,
                    std::string_view reason) {
    error(make_reply(code, enhanced, text), reason);
}

void Session::error(Reply r, std::string_view reason) {
    log::info("event=reject client={}{} reason={} reply={}", settings_.client_addr, id_field(),
              reason, log::quote(r.summary()));
    reply(std::move(r));
    ++errors_;
    const auto cap = settings_.limits.max_errors;
    if (cap > 0 && errors_ >= cap && !closed_) {
        log::info("event=reject client={} reason=too-many-errors reply={}", settings_.client_addr,
                  log::quote("421 4.7.0 Too many errors"));
        reply(421, "4.7.0", fmt::format("{} Error: too many errors", settings_.hostname));
        close();
    }
}

void Session::local_error(Reply r, std::string_view reason) {
    log::info("event=reject client={}{} reason={} reply={}", settings_.client_addr, id_field(),
              log::quote(reason), log::quote(r.summary()));
    reply(std::move(r));
}

std::string Session::id_field() const {
    return message_ ? " id=" + message_->id().text() : std::string();
}

void Session::close() {
    if (closed_) {
        return;
    }
    drop_message();
    closed_ = true;
    out_.emplace_back(Close{});
}

} // namespace spoold::smtp
