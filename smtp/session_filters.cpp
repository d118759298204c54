// The session's side of the filters (smtp/filter.hpp): when they are asked and what each
// verdict does to the reply, stage by stage. Sendmail's and Postfix's semantics:
// - Connect: a refusal (5xx) gives a 554 greeting, then 503 to everything but QUIT; a 421
//   closes the connection; any other 4xx is kept and said to MAIL (the session goes on,
//   so the client hears it where it can act on it).
// - HELO/EHLO: the reply is always 250 (a 421 closes); a refusal is kept for MAIL.
// - MAIL, RCPT, DATA (or the first BDAT): a refusal is that command's reply. A refused
//   DATA ends the transaction.
// - Header section and body: sent as they arrive (the body in the intake's appends); a
//   refusal is said at the end of the content, which is read and dropped meanwhile.
// - End of the message: a refusal instead of the commit; otherwise the filters' header
//   and envelope changes apply and a quarantine keeps the message held.
// "Accept" means no filter wants more (of the message, or at connect and HELO of the
// connection); "discard" answers 250 and stores nothing.
#include <fmt/format.h>

#include <algorithm>

#include "common/address.hpp"
#include "common/log.hpp"
#include "smtp/session.hpp"

namespace spoold::smtp {
namespace {

Reply default_refusal(FilterAction action, bool end_of_message) {
    if (action == FilterAction::kTempFail) {
        return make_reply(451, "4.7.1", "Service unavailable - try again later");
    }
    return make_reply(550, "5.7.1",
                      end_of_message ? "Message content rejected" : "Command rejected");
}

bool refused(const FilterVerdict& v) {
    return v.action == FilterAction::kReject || v.action == FilterAction::kTempFail;
}

Reply refusal_reply(const FilterVerdict& v, bool end_of_message) {
    return v.reply ? *v.reply : default_refusal(v.action, end_of_message);
}

} // namespace

bool Session::filters_active() const { return settings_.filters && !filters_off_; }

bool Session::filters_for_message() const {
    return filters_active() && !filters_done_msg_ && !discard_msg_ && !discard_all_;
}

void Session::ask_filters(FilterStage stage, FilterEvent event) {
    filter_stage_ = stage;
    if (stage != FilterStage::kContent && stage != FilterStage::kEnd) {
        state_ = State::kFilter; // the command's reply waits
    }
    out_.emplace_back(AskFilters{std::move(event)});
}

// By value as every on_* input the driver hands over; only read here.
// NOLINTNEXTLINE(performance-unnecessary-value-param)
Actions Session::on_filter_verdict(FilterVerdict verdict) {
    const FilterStage stage = filter_stage_;
    filter_stage_ = FilterStage::kNone;
    if (state_ == State::kFilter) {
        state_ = State::kCommand;
    }
    if (!closed_) {
        switch (stage) {
        case FilterStage::kNone: break;
        case FilterStage::kConnect: after_connect_verdict(verdict); break;
        case FilterStage::kHelo: after_helo_verdict(verdict); break;
        case FilterStage::kMail: after_mail_verdict(verdict); break;
        case FilterStage::kRcpt: after_rcpt_verdict(verdict); break;
        case FilterStage::kData: after_data_verdict(verdict); break;
        case FilterStage::kContent: after_content_verdict(verdict); break;
        case FilterStage::kEnd: after_end_verdict(verdict); break;
        }
        pump();
    }
    return take_actions();
}

void Session::filter_refusal(const FilterVerdict& v, bool end_of_message) {
    Reply r = refusal_reply(v, end_of_message);
    const std::string why = "filter:" + (v.filter.empty() ? std::string("?") : v.filter);
    if (v.action == FilterAction::kTempFail) {
        local_error(std::move(r), why);
    } else {
        error(std::move(r), why);
    }
}

void Session::after_connect_verdict(const FilterVerdict& v) {
    if (refused(v)) {
        const Reply r = refusal_reply(v, false);
        log::info("event=reject client={} reason={} reply={}", settings_.client_addr,
                  log::quote("filter:" + v.filter), log::quote(r.summary()));
        if (r.code == 421) {
            out_.emplace_back(make_reply(
                421, "",
                fmt::format("{} Service unavailable - try again later", settings_.hostname)));
            close();
            return;
        }
        if (r.code >= 500) {
            out_.emplace_back(make_reply(
                554, "", fmt::format("{} ESMTP not accepting connections", settings_.hostname)));
            access_denied_ = true;
            return;
        }
        refusal_ = r;
    } else if (v.action == FilterAction::kAccept) {
        filters_off_ = true;
    } else if (v.action == FilterAction::kDiscard) {
        discard_all_ = true;
    }
    greet();
}

void Session::after_helo_verdict(const FilterVerdict& v) {
    if (refused(v)) {
        Reply r = refusal_reply(v, false);
        if (r.code == 421) {
            local_error(std::move(r), "filter:" + v.filter);
            close();
            return;
        }
        refusal_ = std::move(r);
    } else if (v.action == FilterAction::kAccept) {
        filters_off_ = true;
    } else if (v.action == FilterAction::kDiscard) {
        discard_all_ = true;
    }
    ehlo_reply(pending_extended_);
}

void Session::after_mail_verdict(const FilterVerdict& v) {
    if (refused(v)) {
        pending_info_ = MessageInfo{};
        filter_refusal(v, false);
        reset_transaction(); // the filters saw this MAIL: they are told it is over
        return;
    }
    filters_done_msg_ = v.action == FilterAction::kAccept;
    discard_msg_ = v.action == FilterAction::kDiscard;
    accept_mail();
}

void Session::after_rcpt_verdict(const FilterVerdict& v) {
    if (refused(v)) {
        pending_rcpt_ = RecipientInfo{};
        filter_refusal(v, false);
        return;
    }
    filters_done_msg_ = filters_done_msg_ || v.action == FilterAction::kAccept;
    discard_msg_ = discard_msg_ || v.action == FilterAction::kDiscard;
    accept_rcpt();
}

void Session::after_data_verdict(const FilterVerdict& v) {
    const bool bdat = pending_bdat_;
    pending_bdat_ = false;
    if (refused(v)) {
        filter_refusal(v, false);
        drop_message();
        reset_transaction();
        if (bdat) {
            state_ = State::kContent; // the chunk's bytes are read and dropped
            decoder_.skip_chunk(pending_chunk_);
        }
        return;
    }
    filters_done_msg_ = filters_done_msg_ || v.action == FilterAction::kAccept;
    discard_msg_ = discard_msg_ || v.action == FilterAction::kDiscard;
    if (bdat) {
        used_bdat_ = true;
        state_ = State::kContent;
        decoder_.begin_chunk(pending_chunk_, pending_last_);
    } else {
        start_content();
    }
}

void Session::after_content_verdict(const FilterVerdict& v) {
    if (refused(v)) {
        if (!content_refusal_) {
            content_refusal_ = v; // said at the end; the rest of the content is dropped
        }
        filters_done_msg_ = true;
    } else if (v.action == FilterAction::kAccept) {
        filters_done_msg_ = true;
    } else if (v.action == FilterAction::kDiscard) {
        discard_msg_ = true;
    }
    if (message_doomed()) {
        body_.clear();
    }
    if (state_ == State::kFinishing) {
        continue_finish();
    } else {
        maybe_flush();
    }
}

void Session::after_end_verdict(const FilterVerdict& v) {
    filters_txn_open_ = false; // the end of the message closes the filters' transaction
    if (refused(v)) {
        filter_refusal(v, true);
        drop_message();
        reset_transaction();
        state_ = State::kCommand;
        return;
    }
    MessageInfo info = info_;
    if (v.action == FilterAction::kDiscard || !apply_changes(v, info)) {
        discard_message();
        return;
    }
    if (!v.quarantine.empty()) {
        info.hold_reason = v.quarantine;
        log::info("event=quarantined client={}{} filter={} reason={}", settings_.client_addr,
                  id_field(), v.filter, log::quote(v.quarantine));
    }
    commit_message(std::move(info));
}

// A filter's changes to the header section and the envelope; false when no recipient
// is left (the message is then discarded, as Sendmail does).
bool Session::apply_changes(const FilterVerdict& v, MessageInfo& info) {
    for (const HeaderChange& h : v.headers) {
        bool ok = false;
        switch (h.kind) {
        case HeaderChange::Kind::kAdd: ok = head_.add(h.name, h.value); break;
        case HeaderChange::Kind::kInsert: ok = head_.insert(h.index, h.name, h.value); break;
        case HeaderChange::Kind::kChange: ok = head_.change(h.index, h.name, h.value); break;
        }
        if (!ok) {
            log::warn("event=filter_change_ignored{} filter={} reason={}", id_field(), v.filter,
                      log::quote("bad header field name " + h.name));
        }
    }
    for (const EnvelopeChange& e : v.envelope) {
        switch (e.kind) {
        case EnvelopeChange::Kind::kSetSender: info.mail_from = e.address; break;
        case EnvelopeChange::Kind::kAddRecipient: {
            const bool have = std::any_of(
                info.recipients.begin(), info.recipients.end(),
                [&](const RecipientInfo& r) { return address::iequals(r.address, e.address); });
            // Our recipient rules hold for a filter's additions too: no open relay.
            if (intake_.check_recipient(e.address) != RecipientVerdict::kAccept) {
                log::warn("event=filter_change_ignored{} filter={} reason={}", id_field(), v.filter,
                          log::quote("recipient not accepted: " + e.address));
            } else if (!have) {
                info.recipients.push_back(RecipientInfo{e.address, "", 0});
            }
            break;
        }
        case EnvelopeChange::Kind::kRemoveRecipient:
            std::erase_if(info.recipients, [&](const RecipientInfo& r) {
                return address::iequals(r.address, e.address);
            });
            break;
        }
    }
    return !info.recipients.empty();
}

// Discarded by a filter: the client hears 250 as for an accepted message (a discard is
// not to be noticed), nothing is stored.
void Session::discard_message() {
    const std::string id = message_ ? message_->id().text() : std::string();
    log::info("event=discarded id={} client={} from={} rcpts={}", id, settings_.client_addr,
              log::quote(info_.mail_from), info_.recipients.size());
    reply(250, "2.0.0", fmt::format("OK queued as {}", id));
    drop_message();
    reset_transaction();
    state_ = State::kCommand;
}

} // namespace spoold::smtp
