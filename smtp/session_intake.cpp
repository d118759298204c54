// A message's hand-off to the intake: begin, the appends of the body (one in flight), the
// end of the content (refusals, discard, the filters' last word) and the commit, and
// dropping a transaction. The intake's own contract is smtp/intake.hpp.
#include <fmt/format.h>

#include "common/log.hpp"
#include "smtp/received_header.hpp"
#include "smtp/session.hpp"

namespace spoold::smtp {

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
    head_.add_own("Received", received_header(received_fields()));
    return true;
}

ReceivedFields Session::received_fields() const {
    ReceivedFields f;
    f.helo = helo_;
    f.client_addr = settings_.client_addr;
    f.hostname = settings_.hostname;
    f.queue_id = message_->id().text();
    f.esmtp = esmtp_;
    f.smtputf8 = info_.smtputf8;
    if (tls_active_) {
        f.tls = tls_.describe();
    }
    if (info_.recipients.size() == 1) {
        f.only_recipient = info_.recipients.front().address;
    }
    f.now_ms = settings_.clock->now_ms();
    return f;
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

} // namespace spoold::smtp
