// The sans-IO client side of one SMTP (RFC 5321) or LMTP (RFC 2033) connection:
// replies in, commands and "what next" out, and a DeliveryResult per message. No
// sockets, no timers, no body bytes: the Asio driver (connection.hpp) does the I/O.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/reply.hpp"
#include "drain/mailstore.hpp"
#include "drain/trouble.hpp"

namespace spoold::drain::connectors {

enum class Dialect { kLmtp, kSmtp };

// ESMTP/LMTP service extensions from the LHLO/EHLO reply.
struct Capabilities {
    bool pipelining = false;      // RFC 2920: MAIL, RCPTs and DATA go in one write
    bool eight_bit_mime = false;  // RFC 6152
    bool smtputf8 = false;        // RFC 6531
    bool starttls = false;        // RFC 3207
    bool chunking = false;        // RFC 3030: recorded only, the body always goes by DATA
    bool dsn = false;             // RFC 3461: NOTIFY, ORCPT, RET and ENVID are passed on
    bool size = false;            // RFC 1870
    std::uint64_t size_limit = 0; // 0 = SIZE offered without a limit
};
Capabilities parse_capabilities(const Reply& hello_reply);

// What a reply says about the store's health lives with the drain (trouble.hpp).
using drain::is_trouble;

// What the driver does after each call.
enum class Next {
    kRead,     // write take_output() (may be empty), then read one reply -> on_reply()
    kStartTls, // the server said 220 to STARTTLS: handshake, then tls_established()
    kSendBody, // write take_output(), stream the dot-stuffed body, then body_sent()
    kReady,    // idle and usable: begin() the next message or quit()
    kDone,     // a message ended: take_result(); then kReady if usable(), else close
    kClose,    // unusable (failed, 421, protocol error, after QUIT): close the connection
};

enum class Stage {
    kGreeting,
    kHello,
    kStartTls,
    kReady,
    kRset,
    kEnvelope,
    kBody,
    kFinal,
    kQuit,
    kClosed,
};

class ClientSession {
public:
    // `helo_name` is our name in LHLO/EHLO. STARTTLS is sent only for SMTP, only when
    // `use_starttls` and the server offers it.
    ClientSession(Dialect dialect, std::string helo_name, bool use_starttls);

    // The connection is up: expect the greeting.
    Next start();
    Next on_reply(const Reply& reply);
    Next tls_established();

    // Starts one message; only in kReady. On a reused connection an RSET goes first on
    // its own, so a connection the server dropped while idle fails before anything of
    // the message was sent (the driver retries it on a fresh connection).
    Next begin(const DeliveryRequest& request);
    // The final "." went out: expect the reply (SMTP) or one per accepted recipient (LMTP).
    Next body_sent();
    // The transport failed (timeout, reset, EOF, protocol error): ends the message
    // with `reply` for every recipient that has no final answer yet; always trouble.
    Next io_failed(const Reply& reply);
    Next quit();

    std::string take_output();
    DeliveryResult take_result();
    // A session-level failure outside a message (greeting, LHLO, STARTTLS).
    const std::optional<Reply>& session_failure() const { return session_failure_; }
    const Capabilities& capabilities() const { return caps_; }
    Stage stage() const { return stage_; }
    bool usable() const { return usable_; }
    bool tls_active() const { return tls_active_; }
    std::uint64_t messages() const { return messages_; }

private:
    enum class Expect { kMail, kRcpt, kData };

    void send(std::string_view line);
    void queue_hello();
    void queue_envelope();
    Next flush_next_command();
    Next envelope_reply(const Reply& reply);
    Next final_reply(const Reply& server_reply);
    Next fail_session(const Reply& reply);
    Next finish_message();

    Dialect dialect_;
    std::string helo_name_;
    bool use_starttls_;
    Stage stage_ = Stage::kGreeting;
    Capabilities caps_;
    bool tls_active_ = false;
    bool usable_ = true;
    std::uint64_t messages_ = 0;
    std::string output_;
    std::optional<Reply> session_failure_;

    // The message in progress.
    std::vector<std::string> recipients_;
    std::deque<std::pair<Expect, std::string>> unsent_; // without PIPELINING, one at a time
    std::deque<Expect> awaiting_;
    std::size_t rcpt_replies_ = 0;
    std::vector<std::size_t> accepted_; // indexes of recipients that got 2xx to RCPT
    std::size_t final_replies_ = 0;
    bool mail_ok_ = false;
    DeliveryResult result_;
};

} // namespace spoold::drain::connectors
