// The SMTP server protocol as a pure state machine: bytes in, replies and actions out.
// No sockets, no timers, no threads: the Asio driver (smtp/server.hpp) does the I/O and
// feeds results of the asynchronous intake steps back in.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/clock.hpp"
#include "common/reply.hpp"
#include "policy/config.hpp"
#include "smtp/body_decoder.hpp"
#include "smtp/filter.hpp"
#include "smtp/header_section.hpp"
#include "smtp/intake.hpp"
#include "smtp/received_header.hpp"

namespace spoold::smtp {

// Body bytes are handed to the intake in appends of about this size, one in flight:
// together with one read buffer that bounds the memory of a session receiving a message.
inline constexpr std::size_t kAppendChunk = 64 * 1024;

// The TLS session of a connection, as the Received: header and the filters see it.
struct TlsInfo {
    std::string version; // "TLSv1.3"
    std::string cipher;  // "TLS_AES_256_GCM_SHA384"
    int bits = 0;
    // "version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256"
    std::string describe() const;
};

struct SessionSettings {
    std::string hostname = "localhost";
    policy::LimitsConfig limits;
    bool starttls_offered = false; // a certificate and key are configured
    bool tls_active = false;       // the connection is already encrypted (implicit TLS)
    TlsInfo tls;                   // when tls_active
    // Filters are configured: the session asks them at every stage through AskFilters
    // actions (the driver holds the smtp::FilterSession).
    bool filters = false;
    std::string client_addr; // textual IP address of the client (a proxy's: the one it names)
    std::uint16_t client_port = 0;
    std::string local_addr; // our address as the client addressed it (for filters)
    std::uint16_t local_port = 0;
    // Authentication-Results: fields claiming this authserv-id are removed from every
    // message (RFC 8601 5); empty = the hostname.
    std::string authserv_id;
    const Clock* clock = &SystemClock::instance(); // only for the Received: date
};

// Actions for the driver, in the order they must happen. Replies are to be written
// in order; the driver may batch consecutive replies into one write (PIPELINING).
struct AppendBody {
    IncomingMessage* message = nullptr; // owned by the session; valid until the result is fed back
    std::string data;
};
struct CommitMessage {
    IncomingMessage* message = nullptr;
    MessageInfo info;
    std::string head; // the header section, stored in front of the appended body
};
struct StartTls {}; // write the pending replies, then do the handshake, then on_tls_established()
struct Close {};    // write the pending replies, then close the connection
// Write the pending replies, ask the filters, then feed the verdict to on_filter_verdict().
struct AskFilters {
    FilterEvent event;
};
struct AbortFilters {}; // tell the filters the message in progress is over; no result

using Action =
    std::variant<Reply, AppendBody, CommitMessage, StartTls, Close, AskFilters, AbortFilters>;
using Actions = std::vector<Action>;

// One SMTP server session. Intake::admit/check_recipient/begin are called
// synchronously from inside feed(); IncomingMessage::append/commit are asked for
// through actions and their results come back through on_append_done/on_commit_result.
//
// Rules decided here (documented once, tested in tests/unit/smtp):
// - Only CRLF "." CRLF ends DATA. A bare LF or bare CR anywhere in the message content
//   (DATA or BDAT) makes the whole message be refused at its end with
//   554 5.6.0 and the transaction is discarded; nothing else ends a message early. A NUL
//   byte in the content is refused the same way.
//   The bytes are decoded by smtp/body_decoder.hpp, the ESMTP parameters of MAIL and
//   RCPT read by smtp/esmtp_params.hpp, command lines by smtp/command_line.hpp; the
//   session keeps the state and the replies.
// - A command line longer than limits.max_line_length gets 500 5.5.2 and is skipped.
//   A text line in DATA longer than RFC 5321's 1000 octets is accepted (we store and
//   relay it unchanged; only the total size limit applies): refusing long lines bounces
//   real mail and does nothing for safety, since the parser never buffers a line.
// - Negative replies caused by the client count as errors; after limits.max_errors the
//   session ends with 421 4.7.0. Local trouble (4.3.x) and 452 4.5.3 do not count.
// - Filters (settings.filters) are asked at connect, HELO, MAIL, RCPT, DATA (or the first
//   BDAT), for the header section and the body as they arrive, and at the end before the
//   commit; their verdict is the reply (smtp/session_filters.cpp says how, stage by stage).
class Session {
public:
    Session(SessionSettings settings, Intake& intake);
    ~Session();
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // The 220 banner.
    Actions greeting();
    // Consumes as much of `bytes` as the state allows and keeps the rest (at most what
    // the driver read while wants_input() was true).
    Actions feed(std::string_view bytes);
    Actions on_append_done(Status status);
    Actions on_commit_result(Result<CommitInfo> result);
    Actions on_tls_established(TlsInfo tls);
    Actions on_filter_verdict(FilterVerdict verdict);
    // The driver's deadline passed (command or data timeout): 421 4.4.2 and Close.
    Actions on_timeout();
    // The server is stopping: 421 4.3.2 and Close (call it when !busy()).
    Actions on_shutdown();
    // The connection is gone: drop any message being received.
    void on_disconnect();

    // The driver reads more input only when this is true; false while an append or a
    // filter is throttling the body, a commit or a filter verdict is pending, the TLS
    // handshake is due, or after Close.
    bool wants_input() const;
    // Reading message content: the data timeout applies instead of the command timeout.
    bool in_data() const;
    // An append or a commit is outstanding: the session must not be dropped at stop.
    bool busy() const;
    bool closed() const { return closed_; }
    std::uint32_t messages_accepted() const { return messages_; }

private:
    enum class State {
        kCommand,   // reading command lines
        kContent,   // DATA content or a BDAT chunk: decoder_ says where it ends
        kFinishing, // end of content seen: flushing the last append, then commit
        kCommit,    // commit outstanding
        kTls,       // STARTTLS accepted, waiting for the handshake
        kFilter,    // a command (or the greeting) waits for the filters' verdict
    };
    // What the verdict in flight answers.
    enum class FilterStage { kNone, kConnect, kHelo, kMail, kRcpt, kData, kContent, kEnd };

    // The core: input, framing, replies (session.cpp).
    void greet();
    void pump();
    bool handle_command_input();

    // Commands (session_commands.cpp).
    void handle_command(std::string_view line);
    void refuse_proxy_header();
    void cmd_ehlo(std::string_view arg, bool extended);
    void cmd_mail(std::string_view arg);
    void cmd_rcpt(std::string_view arg);
    void cmd_rset(std::string_view arg);
    void cmd_starttls(std::string_view arg);
    void accept_mail();
    void accept_rcpt();
    void ehlo_reply(bool extended);

    // Filters (session_filters.cpp).
    bool filters_active() const;
    bool filters_for_message() const;
    void ask_filters(FilterStage stage, FilterEvent event);
    void after_connect_verdict(const FilterVerdict& v);
    void after_helo_verdict(const FilterVerdict& v);
    void after_mail_verdict(const FilterVerdict& v);
    void after_rcpt_verdict(const FilterVerdict& v);
    void after_data_verdict(const FilterVerdict& v);
    void after_content_verdict(const FilterVerdict& v);
    void after_end_verdict(const FilterVerdict& v);
    bool apply_changes(const FilterVerdict& v, MessageInfo& info);
    // A filter's refusal (or our default reply for it at this stage), logged and counted.
    void filter_refusal(const FilterVerdict& v, bool end_of_message);
    void discard_message();

    // A message's content (session_data.cpp).
    void cmd_data(std::string_view arg);
    void cmd_bdat(std::string_view arg);
    bool ready_for_content();
    void start_content();
    void consume_content();
    // Decoded message bytes: into the header section until it ends, then the body.
    void take_content(std::string_view bytes);
    void header_section_ended();
    void count_content(std::size_t produced);
    void content_ended(ContentEnd end);
    bool message_doomed() const;

    // The hand-off to the intake (session_intake.cpp).
    bool ensure_message();
    // What the Received: header says (smtp/received_header.hpp builds it).
    ReceivedFields received_fields() const;
    void maybe_flush();
    void flush_body();
    void end_of_content();
    void continue_finish();
    void commit_message(MessageInfo info);
    void reset_transaction();
    void drop_message();

    // The core again: actions out, replies, errors, closing (session.cpp).
    Actions take_actions();

    void reply(int code, std::string_view enhanced, std::string_view text);
    void reply(Reply r);
    // A negative reply caused by the client: logged and counted towards max_errors.
    void error(int code, std::string_view enhanced, std::string_view text, std::string_view reason);
    void error(Reply r, std::string_view reason);
    // A negative reply caused by local trouble: logged, not counted.
    void local_error(Reply r, std::string_view reason);
    void close();
    // " id=<queue id>" while a message exists, for log lines.
    std::string id_field() const;

    SessionSettings settings_;
    Intake& intake_;
    Actions out_;
    std::string in_;
    std::size_t in_pos_ = 0;
    State state_ = State::kCommand;
    bool closed_ = false;
    bool skipping_long_line_ = false;
    bool first_input_ = true; // no command line read yet (a PROXY v2 signature is refused)
    bool tls_active_ = false;
    TlsInfo tls_;
    std::uint32_t errors_ = 0;
    std::uint32_t messages_ = 0;

    // Greeting state: reset by STARTTLS.
    std::string helo_;
    bool esmtp_ = false; // EHLO (not HELO): ESMTP parameters and enhanced codes allowed

    // Transaction state: reset by RSET, EHLO, HELO, STARTTLS and the end of a message.
    bool have_mail_ = false;
    MessageInfo info_;
    std::uint64_t declared_size_ = 0;
    std::unique_ptr<IncomingMessage> message_;
    std::unique_ptr<IncomingMessage> retired_; // dropped while an append was in flight
    bool used_bdat_ = false;

    // Content state of the message being received.
    BodyDecoder decoder_;
    HeaderSection head_;     // held until the commit: edits apply to it
    std::string scratch_;    // decoded bytes on their way into head_
    std::string body_;       // decoded bytes after the header section, not yet appended
    std::uint64_t size_ = 0; // decoded client bytes (without our Received: header)
    bool too_big_ = false;
    bool append_failed_ = false;
    Reply append_error_;
    bool append_in_flight_ = false;

    // Filters. For the connection: a verdict at connect or HELO.
    FilterStage filter_stage_ = FilterStage::kNone; // a verdict is awaited when not kNone
    bool filters_off_ = false;     // accepted: no filter wants more of this connection
    bool access_denied_ = false;   // refused at connect: 503 to all but QUIT
    std::optional<Reply> refusal_; // refused at connect or HELO: MAIL hears it
    bool discard_all_ = false;     // every message of this connection is discarded
    // For the transaction: reset with it.
    bool filters_txn_open_ = false; // the filters saw this transaction's MAIL
    bool filters_done_msg_ = false; // no filter wants more of this message
    bool discard_msg_ = false;
    std::optional<FilterVerdict> content_refusal_; // said at the end of the content
    bool end_asked_ = false;
    // The command whose reply waits for the verdict.
    bool pending_extended_ = false; // EHLO (not HELO)
    MessageInfo pending_info_;
    std::uint64_t pending_size_ = 0;
    RecipientInfo pending_rcpt_;
    std::uint64_t pending_chunk_ = 0; // BDAT: the chunk's size and whether it is LAST
    bool pending_last_ = false;
    bool pending_bdat_ = false;
};

} // namespace spoold::smtp
