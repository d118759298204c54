// libFuzzer target: arbitrary client bytes, split at fuzzer-chosen points, into smtp::Session
// driven the way smtp/server.cpp drives it, with an intake whose verdicts the input picks.
// Input: 8 control bytes (seed of every split and verdict), then the client's bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/clock.hpp"
#include "tests/fuzz/fuzz_support.hpp"
#include "common/log.hpp"
#include "smtp/intake.hpp"
#include "smtp/session.hpp"

using namespace spoold;
using namespace spoold::smtp;

namespace {

using fuzz::check;
using fuzz::Choices;

struct MessageLog {
    std::string body;
    bool commit_asked = false;
    bool committed = false; // a successful commit result was fed back
    bool rolled_back = false;
    bool append_in_flight = false;
};

class FuzzIntake;

class FuzzMessage final : public IncomingMessage {
public:
    FuzzMessage(FuzzIntake& intake, std::size_t index) : intake_(intake), index_(index) {}
    QueueId id() const override { return QueueId{0x1000 + index_}; }
    void append(std::string data, std::function<void(Status)> done) override;
    void commit(MessageInfo info, std::string head,
                std::function<void(Result<CommitInfo>)> done) override;
    void rollback() override;

private:
    FuzzIntake& intake_;
    std::size_t index_;
};

class FuzzIntake final : public Intake {
public:
    explicit FuzzIntake(Choices& choices) : choices_(choices) {}

    Status admit() override {
        if (choices_.one_in(8)) {
            return fail(ErrorKind::kSpoolFull, "above watermark");
        }
        return {};
    }
    RecipientVerdict check_recipient(const std::string&) override {
        switch (choices_.below(8)) {
        case 0: return RecipientVerdict::kRelayDenied;
        case 1: return RecipientVerdict::kUnknownUser;
        case 2: return RecipientVerdict::kTempFail;
        default: return RecipientVerdict::kAccept;
        }
    }
    Result<std::unique_ptr<IncomingMessage>> begin() override {
        if (choices_.one_in(16)) {
            return fail(ErrorKind::kIo, "cannot begin");
        }
        messages.emplace_back();
        return std::unique_ptr<IncomingMessage>(
            std::make_unique<FuzzMessage>(*this, messages.size() - 1));
    }

    Choices& choices_;
    std::deque<MessageLog> messages;
    std::size_t appends_in_flight = 0;
};

void FuzzMessage::append(std::string data, std::function<void(Status)> done) {
    auto& m = intake_.messages[index_];
    check(!m.commit_asked, "append after commit");
    check(!m.rolled_back, "append after rollback");
    check(intake_.appends_in_flight == 0, "more than one append in flight");
    check(data.size() <= 2 * kAppendChunk, "append larger than the chunk bound");
    m.body += data;
    m.append_in_flight = true;
    ++intake_.appends_in_flight;
    Status s;
    if (intake_.choices_.one_in(16)) {
        s = fail(ErrorKind::kDiskFull, "no space");
    }
    m.append_in_flight = false;
    --intake_.appends_in_flight;
    done(s);
}

void FuzzMessage::commit(MessageInfo info, std::string head,
                         std::function<void(Result<CommitInfo>)> done) {
    auto& m = intake_.messages[index_];
    m.body = std::move(head) + m.body; // as the spool stores it
    check(!m.commit_asked, "commit asked twice");
    check(!m.rolled_back, "commit after rollback");
    check(intake_.appends_in_flight == 0, "commit while an append is in flight");
    check(!info.recipients.empty(), "commit without recipients");
    m.commit_asked = true;
    // Only CRLF line ends reach the spool: a bare CR or LF refuses the whole message.
    for (std::size_t i = 0; i < m.body.size(); ++i) {
        if (m.body[i] == '\n') {
            check(i > 0 && m.body[i - 1] == '\r', "bare LF in a committed body");
        } else if (m.body[i] == '\r') {
            check(i + 1 < m.body.size() && m.body[i + 1] == '\n', "bare CR in a committed body");
        }
    }
    check(m.body.starts_with("Received: "), "committed body without our Received: header");
    if (intake_.choices_.one_in(6)) {
        done(fail(intake_.choices_.one_in(2) ? ErrorKind::kSpoolFull : ErrorKind::kIo,
                  "commit failed"));
        return;
    }
    m.committed = true;
    done(CommitInfo{"normal"});
}

void FuzzMessage::rollback() {
    auto& m = intake_.messages[index_];
    // A message handed to commit belongs to the intake: rolling it back could drop mail
    // the client is about to hear 250 for.
    check(!m.commit_asked, "rollback after commit");
    m.rolled_back = true;
}

// SPOOLD_FUZZ_TRACE=1 prints the conversation, to read a finding.
const bool g_trace = std::getenv("SPOOLD_FUZZ_TRACE") != nullptr;

void trace(std::string_view what, std::string_view text) {
    if (g_trace) {
        std::fprintf(stderr, "%.*s%.*s\n", static_cast<int>(what.size()), what.data(),
                     static_cast<int>(text.size()), text.data());
    }
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// "ddd-text" CRLF ... "ddd text" CRLF: same code on every line, no CR or LF in the text.
void check_reply(const Reply& r) {
    check(r.code >= 200 && r.code <= 599, "reply code out of range", r.summary());
    if (!r.enhanced.empty()) {
        const auto& e = r.enhanced;
        check(e.size() >= 5 && e[1] == '.' && e[0] == static_cast<char>('0' + r.code / 100),
              "enhanced code does not match the reply code", r.summary());
    }
    const std::string wire = r.wire();
    const std::string code = std::to_string(r.code);
    std::size_t pos = 0;
    while (pos < wire.size()) {
        const auto crlf = wire.find("\r\n", pos);
        check(crlf != std::string::npos, "reply line without CRLF", wire);
        const std::string_view line(wire.data() + pos, crlf - pos);
        check(line.size() >= 4 && line.substr(0, 3) == code && is_digit(line[0]),
              "reply line without its code", wire);
        check(line.find_first_of("\r\n") == std::string_view::npos, "CR or LF inside a reply line",
              wire);
        const bool last = crlf + 2 == wire.size();
        check(line[3] == (last ? ' ' : '-'), "bad continuation marker", wire);
        check(line.size() <= 512, "reply line over RFC 5321's 512 octets", wire);
        pos = crlf + 2;
    }
}

// The driver of smtp/server.cpp: actions in order, each append and commit awaited (here:
// completed inline) and its result fed back before the next action.
class Driver {
public:
    explicit Driver(Session& session) : session_(session) {}

    void run(Actions actions) {
        for (auto& a : actions) {
            queue_.push_back(std::move(a));
        }
        while (!queue_.empty()) {
            Action action = std::move(queue_.front());
            queue_.pop_front();
            check(!closed_, "an action after Close");
            if (const auto* reply = std::get_if<Reply>(&action)) {
                check_reply(*reply);
                trace("S: ", reply->summary());
                // While a commit is outstanding nothing may be answered: the next reply in
                // order is the commit's own.
                check(!commit_outstanding_, "a reply while a commit is outstanding",
                      reply->summary());
                // After 354 the next reply answers the message: a 250 there must come from
                // a commit result (which clears the flag before its reply is queued).
                check(!(reply->code == 250 && in_message_),
                      "250 to a message without a commit result");
                in_message_ = reply->code == 354;
                if (reply->code == 250 && reply->summary().find("queued as") != std::string::npos) {
                    ++queued_replies_;
                }
            } else if (auto* append = std::get_if<AppendBody>(&action)) {
                std::deque<Status> results;
                append->message->append(std::move(append->data),
                                        [&results](Status s) { results.push_back(std::move(s)); });
                check(results.size() == 1, "append completed other than once");
                push(session_.on_append_done(std::move(results.front())));
            } else if (auto* commit = std::get_if<CommitMessage>(&action)) {
                for (const auto& later : queue_) {
                    check(!std::holds_alternative<Reply>(later), "a reply queued behind a commit");
                }
                std::deque<Result<CommitInfo>> results;
                commit_outstanding_ = true;
                in_message_ = false;
                commit->message->commit(
                    std::move(commit->info), std::move(commit->head),
                    [&results](Result<CommitInfo> r) { results.push_back(std::move(r)); });
                check(results.size() == 1, "commit completed other than once");
                const bool ok = results.front().has_value();
                trace("commit: ", ok ? "ok" : "failed");
                commits_ok_ += ok ? 1 : 0;
                commit_outstanding_ = false;
                const std::uint32_t before = session_.messages_accepted();
                Actions after = session_.on_commit_result(std::move(results.front()));
                check(session_.messages_accepted() == before + (ok ? 1 : 0),
                      "accepted count is off");
                // The first reply after the commit answers the message.
                const Reply* first = nullptr;
                for (const auto& a : after) {
                    if ((first = std::get_if<Reply>(&a)) != nullptr) {
                        break;
                    }
                }
                check(first != nullptr, "no reply to the end of a message");
                check(ok ? first->code == 250 : first->code >= 400 && first->code < 500,
                      "reply to the end of a message does not match the commit result",
                      first->summary());
                push(std::move(after));
            } else if (std::holds_alternative<StartTls>(action)) {
                push(
                    session_.on_tls_established(TlsInfo{"TLSv1.3", "TLS_AES_256_GCM_SHA384", 256}));
            } else if (std::holds_alternative<Close>(action)) {
                closed_ = true;
            }
        }
    }

    bool closed() const { return closed_; }
    std::size_t queued_replies() const { return queued_replies_; }
    std::size_t commits_ok() const { return commits_ok_; }

private:
    void push(Actions actions) {
        for (auto& a : actions) {
            queue_.push_back(std::move(a));
        }
    }

    Session& session_;
    std::deque<Action> queue_;
    bool closed_ = false;
    bool commit_outstanding_ = false;
    bool in_message_ = false;
    std::size_t queued_replies_ = 0;
    std::size_t commits_ok_ = 0;
};

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    log::set_level(log::Level::kError);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto [choices, input] = fuzz::split_input(data, size);

    FakeClock clock;
    SessionSettings settings;
    settings.hostname = "mx.example.com";
    settings.client_addr = "192.0.2.7";
    settings.clock = &clock;
    settings.starttls_offered = choices.one_in(2);
    settings.tls_active = !settings.starttls_offered && choices.one_in(4);
    if (settings.tls_active) {
        settings.tls = TlsInfo{"TLSv1.3", "TLS_AES_128_GCM_SHA256", 128};
    }
    // Small limits too, so the fuzzer reaches the size, line, recipient and error caps.
    if (choices.one_in(2)) {
        settings.limits.max_message_size = 1 + choices.below(4096);
        settings.limits.max_recipients = static_cast<std::uint32_t>(1 + choices.below(4));
        settings.limits.max_errors = static_cast<std::uint32_t>(choices.below(6));
        settings.limits.max_line_length = static_cast<std::uint32_t>(16 + choices.below(600));
    }

    FuzzIntake intake(choices);
    Session session(settings, intake);
    Driver driver(session);
    driver.run(session.greeting());

    std::size_t pos = 0;
    while (pos < input.size() && !driver.closed()) {
        check(session.wants_input(), "the session wants no input but nothing is outstanding");
        if (choices.one_in(64)) {
            driver.run(choices.one_in(2) ? session.on_timeout() : session.on_shutdown());
            continue;
        }
        // Mostly small reads (splits inside commands and at CRLF.CRLF), sometimes large.
        const std::size_t max_read = choices.one_in(4) ? 8192 : 16;
        const std::size_t n = std::min(input.size() - pos, 1 + choices.below(max_read));
        trace("C: ", input.substr(pos, n));
        driver.run(session.feed(input.substr(pos, n)));
        pos += n;
    }
    check(!session.busy(), "busy after every action completed");
    check(driver.queued_replies() == driver.commits_ok(),
          "\"queued as\" replies differ from commits");
    check(session.messages_accepted() == driver.commits_ok(),
          "accepted count differs from commits");
    session.on_disconnect();
    for (const auto& m : intake.messages) {
        check(m.committed || m.rolled_back || m.commit_asked,
              "a message neither committed nor rolled back");
        check(!(m.committed && m.rolled_back), "a message both committed and rolled back");
    }
    return 0;
}
