#include "drain/connectors/client_session.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fmt/format.h>

#include "common/address.hpp"

namespace spoold::drain::connectors {
namespace {

std::string upper(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return out;
}

bool non_ascii(std::string_view s) {
    return std::any_of(s.begin(), s.end(),
                       [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}

// What a recipient takes when the server answered a step with a reply that cannot be
// its answer (a 2xx to DATA, a 3xx to the dot): mailstore trouble, never a delivery.
Reply not_a_delivery(const Reply& reply, std::string_view step) {
    return make_reply(451, "4.4.0",
                      fmt::format("mailstore answered {} with \"{}\"", step, reply.summary()));
}

// RFC 1870's limit is 1*20DIGIT. Anything else ("-1", "10M", a number past 2^64 - 1) is no
// limit on purpose: a wrong limit would defer or bounce mail the store would have taken,
// while with none the store still says 552 to a message too big for it.
std::uint64_t size_limit(std::string_view rest) {
    while (!rest.empty() && rest.front() == ' ') {
        rest.remove_prefix(1);
    }
    std::uint64_t limit = 0;
    const auto* end = rest.data() + rest.size();
    const bool digits = !rest.empty() && std::all_of(rest.begin(), rest.end(),
                                                     [](char c) { return c >= '0' && c <= '9'; });
    if (!digits || std::from_chars(rest.data(), end, limit).ptr != end) {
        return 0;
    }
    return limit;
}

} // namespace

Capabilities parse_capabilities(const Reply& hello_reply) {
    Capabilities caps;
    // The first line is the server's greeting text, not an extension.
    for (std::size_t i = 1; i < hello_reply.lines.size(); ++i) {
        const std::string line = upper(hello_reply.lines[i]);
        const std::string keyword = line.substr(0, line.find(' '));
        if (keyword == "PIPELINING") {
            caps.pipelining = true;
        } else if (keyword == "8BITMIME") {
            caps.eight_bit_mime = true;
        } else if (keyword == "SMTPUTF8") {
            caps.smtputf8 = true;
        } else if (keyword == "STARTTLS") {
            caps.starttls = true;
        } else if (keyword == "DSN") {
            caps.dsn = true;
        } else if (keyword == "CHUNKING") {
            caps.chunking = true;
        } else if (keyword == "SIZE") {
            caps.size = true;
            caps.size_limit = size_limit(std::string_view(line).substr(keyword.size()));
        }
    }
    return caps;
}

ClientSession::ClientSession(Dialect dialect, std::string helo_name, bool use_starttls)
    : dialect_(dialect), helo_name_(std::move(helo_name)),
      use_starttls_(use_starttls && dialect == Dialect::kSmtp) {}

void ClientSession::send(std::string_view line) {
    output_ += line;
    output_ += "\r\n";
}

std::string ClientSession::take_output() { return std::exchange(output_, {}); }

DeliveryResult ClientSession::take_result() { return std::exchange(result_, {}); }

Next ClientSession::start() {
    stage_ = Stage::kGreeting;
    return Next::kRead;
}

void ClientSession::queue_hello() {
    send(fmt::format("{} {}", dialect_ == Dialect::kLmtp ? "LHLO" : "EHLO", helo_name_));
    stage_ = Stage::kHello;
}

Next ClientSession::fail_session(const Reply& reply) {
    session_failure_ = reply;
    usable_ = false;
    stage_ = Stage::kClosed;
    return Next::kClose;
}

Next ClientSession::tls_established() {
    tls_active_ = true;
    caps_ = Capabilities{}; // RFC 3207 4.2: forget what was learnt before TLS
    queue_hello();
    return Next::kRead;
}

Next ClientSession::on_reply(const Reply& reply) {
    const bool in_message =
        stage_ == Stage::kRset || stage_ == Stage::kEnvelope || stage_ == Stage::kFinal;
    if (reply.code == 421 && in_message) {
        return io_failed(reply); // the server is closing: every open answer takes the 421
    }
    switch (stage_) {
    case Stage::kGreeting:
        if (!reply.positive()) {
            return fail_session(reply);
        }
        queue_hello();
        return Next::kRead;
    case Stage::kHello:
        if (!reply.positive()) {
            return fail_session(reply);
        }
        caps_ = parse_capabilities(reply);
        if (use_starttls_ && caps_.starttls && !tls_active_) {
            send("STARTTLS");
            stage_ = Stage::kStartTls;
            return Next::kRead;
        }
        stage_ = Stage::kReady;
        return Next::kReady;
    case Stage::kStartTls:
        if (reply.code == 220) {
            return Next::kStartTls;
        }
        // Opportunistic TLS (Postfix "may"): a refused STARTTLS leaves us in plain text.
        stage_ = Stage::kReady;
        return Next::kReady;
    case Stage::kRset:
        if (!reply.positive()) {
            result_.session_reply = reply;
            result_.mailstore_trouble = is_trouble(reply);
            usable_ = false; // a server that refuses RSET is in no state for another message
            return finish_message();
        }
        queue_envelope();
        return awaiting_.empty() ? flush_next_command() : Next::kRead;
    case Stage::kEnvelope: return envelope_reply(reply);
    case Stage::kFinal: return final_reply(reply);
    case Stage::kQuit:
        stage_ = Stage::kClosed;
        usable_ = false;
        return Next::kClose;
    case Stage::kReady:
    case Stage::kBody:
    case Stage::kClosed: break;
    }
    return fail_session(make_reply(
        421, "4.4.0", fmt::format("unexpected reply from the mailstore: {}", reply.summary())));
}

Next ClientSession::begin(const DeliveryRequest& request) {
    recipients_ = request.recipients;
    result_ = DeliveryResult{};
    result_.per_recipient.assign(recipients_.size(), Reply{});
    unsent_.clear();
    awaiting_.clear();
    rcpt_replies_ = 0;
    accepted_.clear();
    final_replies_ = 0;
    mail_ok_ = false;

    if (recipients_.empty()) {
        return Next::kDone; // nothing to do; the connection stays as it was
    }
    bool utf8_envelope = non_ascii(request.mail_from);
    for (const auto& r : recipients_) {
        utf8_envelope = utf8_envelope || non_ascii(r);
    }
    if (utf8_envelope && !caps_.smtputf8) {
        // RFC 6531 3.4: an internationalised envelope cannot be downgraded (Postfix
        // bounces the same way). The mailstore works; this message cannot go there.
        result_.session_reply =
            make_reply(550, "5.6.7", "SMTPUTF8 is required, but was not offered by the mailstore");
        return finish_message();
    }
    // RFC 3461: an SMTP next hop that offers DSN gets the parameters and reports itself;
    // to one that does not, or into the mailbox over LMTP, we are the last to report.
    const bool pass_dsn = dialect_ == Dialect::kSmtp && caps_.dsn;
    if (dialect_ == Dialect::kSmtp) {
        result_.handoff = pass_dsn ? Handoff::kPassedOn : Handoff::kRelayed;
    }
    std::string mail = fmt::format("MAIL FROM:<{}>", request.mail_from);
    if (request.eight_bit_mime && caps_.eight_bit_mime) {
        mail += " BODY=8BITMIME"; // without the extension 8-bit goes as is, like Postfix
    }
    if (request.smtputf8 && caps_.smtputf8) {
        mail += " SMTPUTF8";
    }
    if (caps_.size && request.size > 0) {
        mail += fmt::format(" SIZE={}", request.size);
    }
    if (pass_dsn && !request.ret.empty()) {
        mail += fmt::format(" RET={}", request.ret);
    }
    if (pass_dsn && !request.envid.empty()) {
        mail += fmt::format(" ENVID={}", address::encode_xtext(request.envid));
    }
    unsent_.emplace_back(Expect::kMail, std::move(mail));
    for (std::size_t i = 0; i < recipients_.size(); ++i) {
        std::string rcpt = fmt::format("RCPT TO:<{}>", recipients_[i]);
        if (pass_dsn && i < request.recipient_dsn.size()) {
            const RecipientDsn& d = request.recipient_dsn[i];
            if (d.notify != 0) {
                rcpt += fmt::format(" NOTIFY={}", address::format_notify(d.notify));
            }
            if (!d.orcpt.empty()) {
                rcpt += fmt::format(" ORCPT={}", address::format_orcpt(d.orcpt));
            }
        }
        unsent_.emplace_back(Expect::kRcpt, std::move(rcpt));
    }
    unsent_.emplace_back(Expect::kData, "DATA");
    ++messages_;
    if (messages_ > 1) {
        send("RSET");
        stage_ = Stage::kRset;
        if (caps_.pipelining) {
            // RFC 2920 3.1: RSET may open a pipelined group. The envelope goes with it, a
            // round trip fewer per message; its replies are read after RSET's.
            (void)flush_next_command();
        }
        return Next::kRead;
    }
    stage_ = Stage::kEnvelope;
    return flush_next_command();
}

void ClientSession::queue_envelope() { stage_ = Stage::kEnvelope; }

Next ClientSession::flush_next_command() {
    do {
        auto [expect, line] = std::move(unsent_.front());
        unsent_.pop_front();
        send(line);
        awaiting_.push_back(expect);
    } while (caps_.pipelining && !unsent_.empty());
    return Next::kRead;
}

Next ClientSession::envelope_reply(const Reply& reply) {
    if (awaiting_.empty()) {
        return io_failed(make_reply(421, "4.4.0", "unexpected reply from the mailstore"));
    }
    const Expect expect = awaiting_.front();
    awaiting_.pop_front();
    switch (expect) {
    case Expect::kMail:
        mail_ok_ = reply.positive();
        if (!mail_ok_) {
            result_.session_reply = reply;
            result_.mailstore_trouble = is_trouble(reply);
            if (!caps_.pipelining) {
                unsent_.clear();
            }
        }
        break;
    case Expect::kRcpt: {
        const std::size_t index = rcpt_replies_++;
        if (index < result_.per_recipient.size()) {
            result_.per_recipient[index] = reply;
            if (reply.positive()) {
                accepted_.push_back(index);
            }
        }
        if (!caps_.pipelining && rcpt_replies_ == recipients_.size() && accepted_.empty()) {
            unsent_.clear(); // no DATA without a recipient
        }
        break;
    }
    case Expect::kData:
        if (reply.code == 354) {
            if (mail_ok_ && !accepted_.empty()) {
                stage_ = Stage::kBody;
                return Next::kSendBody;
            }
            // RFC 2920 3.1 says DATA must fail without a valid recipient; a server
            // that opens DATA anyway is not trusted with the next message either.
            usable_ = false;
            return finish_message();
        }
        if (mail_ok_ && !accepted_.empty()) {
            // Only 354 opens the body: a 2xx or another 3xx to DATA is a broken server,
            // and taken as a delivery it would remove mail no store has.
            const Reply refusal = reply.positive() ? not_a_delivery(reply, "DATA") : reply;
            usable_ = usable_ && !reply.positive();
            result_.session_reply = refusal;
            result_.mailstore_trouble = result_.mailstore_trouble || is_trouble(refusal);
            for (const std::size_t i : accepted_) {
                result_.per_recipient[i] = refusal;
            }
        }
        break;
    }
    if (!awaiting_.empty()) {
        return Next::kRead;
    }
    if (!unsent_.empty()) {
        return flush_next_command();
    }
    return finish_message();
}

Next ClientSession::body_sent() {
    stage_ = Stage::kFinal;
    final_replies_ = 0;
    return Next::kRead;
}

Next ClientSession::final_reply(const Reply& server_reply) {
    // Only a 2xx after the dot is a delivery; a 3xx there is a broken server.
    const bool intermediate = server_reply.code >= 300 && server_reply.code < 400;
    const Reply reply =
        intermediate ? not_a_delivery(server_reply, "the end of data") : server_reply;
    usable_ = usable_ && !intermediate;
    result_.mailstore_trouble = result_.mailstore_trouble || is_trouble(reply);
    if (dialect_ == Dialect::kSmtp) {
        for (const std::size_t i : accepted_) {
            result_.per_recipient[i] = reply;
        }
        return finish_message();
    }
    // RFC 2033 4.2: one reply per recipient accepted at RCPT, in RCPT order.
    result_.per_recipient[accepted_[final_replies_++]] = reply;
    if (final_replies_ < accepted_.size()) {
        return Next::kRead;
    }
    return finish_message();
}

Next ClientSession::io_failed(const Reply& reply) {
    usable_ = false;
    const bool in_message = stage_ == Stage::kRset || stage_ == Stage::kEnvelope ||
                            stage_ == Stage::kBody || stage_ == Stage::kFinal;
    if (!in_message) {
        session_failure_ = reply;
        stage_ = Stage::kClosed;
        return Next::kClose;
    }
    result_.mailstore_trouble = true;
    result_.connection_lost = true;
    if (stage_ == Stage::kFinal) {
        // Recipients answered after the dot are final (a 250 there means delivered, so
        // they must never take the failure and be delivered twice); the rest take it.
        std::vector<bool> answered(recipients_.size(), false);
        for (std::size_t k = 0; k < final_replies_; ++k) {
            answered[accepted_[k]] = true;
        }
        for (const std::size_t i : accepted_) {
            if (!answered[i]) {
                result_.per_recipient[i] = reply;
            }
        }
        if (final_replies_ == 0) {
            result_.session_reply = reply;
        }
    } else {
        result_.session_reply = reply;
        for (auto& r : result_.per_recipient) {
            if (r.code == 0 || r.positive()) {
                r = reply; // a 2xx to RCPT is not a delivery yet
            }
        }
    }
    return finish_message();
}

Next ClientSession::finish_message() {
    if (result_.session_reply && !mail_ok_) {
        for (auto& r : result_.per_recipient) {
            r = *result_.session_reply; // after a failed MAIL the RCPT replies mean nothing
        }
    }
    for (auto& r : result_.per_recipient) {
        if (r.code == 0) {
            r = result_.session_reply ? *result_.session_reply
                                      : make_reply(451, "4.4.0", "no reply from the mailstore");
        }
    }
    unsent_.clear();
    awaiting_.clear();
    stage_ = usable_ ? Stage::kReady : Stage::kClosed;
    return Next::kDone;
}

Next ClientSession::quit() {
    send("QUIT");
    stage_ = Stage::kQuit;
    return Next::kRead;
}

} // namespace spoold::drain::connectors
