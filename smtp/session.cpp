// The session's core: input in and actions out, command-line framing, the replies and the
// error count. The commands are in session_commands.cpp, a message's content in
// session_data.cpp, its hand-off to the intake in session_intake.cpp, the filters in
// session_filters.cpp.
#include "smtp/session.hpp"

#include <fmt/format.h>

#include "common/log.hpp"
#include "smtp/proxy_protocol.hpp"

namespace spoold::smtp {

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
