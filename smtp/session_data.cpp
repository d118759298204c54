// A message's content: DATA and BDAT, and the bytes after them through the body decoder
// into the header section and the body, counted against the size limit. What happens at the
// end of the content and how the body reaches the intake is in session_intake.cpp.
#include <fmt/format.h>

#include <algorithm>

#include "common/log.hpp"
#include "smtp/command_line.hpp"
#include "smtp/session.hpp"

namespace spoold::smtp {

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
    const auto bdat = parse_bdat_args(arg);
    if (!bdat) {
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
        decoder_.skip_chunk(bdat->size);
        return;
    }
    if (!ready_for_content()) {
        decoder_.skip_chunk(bdat->size);
        return;
    }
    if (!used_bdat_ && filters_for_message()) {
        // The filters hear of the first chunk as DATA (as Postfix tells them).
        pending_bdat_ = true;
        pending_chunk_ = bdat->size;
        pending_last_ = bdat->last;
        ask_filters(FilterStage::kData, FilterData{message_->id()});
        return;
    }
    used_bdat_ = true;
    decoder_.begin_chunk(bdat->size, bdat->last);
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

} // namespace spoold::smtp
