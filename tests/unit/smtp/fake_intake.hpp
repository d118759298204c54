// Test doubles for the SMTP intake contract and a driver that runs a Session's actions
// synchronously, so protocol tests read as transcripts. Not thread-safe; the loopback
// server tests use their own wrapper.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "smtp/intake.hpp"
#include "smtp/session.hpp"

namespace spoold::smtp::test {

struct StoredMessage {
    QueueId id;
    std::string body; // the appended bytes; after the commit, the whole message
    std::string head; // the header section the commit carried
    MessageInfo info;
    bool committed = false;
    bool rolled_back = false;
    std::size_t appends = 0;
    std::size_t largest_append = 0;
};

class FakeIntake;

class FakeMessage final : public IncomingMessage {
public:
    FakeMessage(FakeIntake& intake, std::size_t index) : intake_(intake), index_(index) {}
    QueueId id() const override;
    void append(std::string data, std::function<void(Status)> done) override;
    void commit(MessageInfo info, std::string head,
                std::function<void(Result<CommitInfo>)> done) override;
    void rollback() override;

private:
    FakeIntake& intake_;
    std::size_t index_;
};

// Local domain: example.com. "unknown@example.com" is an unknown user,
// "temp@example.com" a directory outage; any other domain is relay.
class FakeIntake final : public Intake {
public:
    Status admit() override {
        if (spool_full) {
            return fail(ErrorKind::kSpoolFull, "above watermark");
        }
        return {};
    }
    RecipientVerdict check_recipient(const std::string& address) override {
        const auto at = address.rfind('@');
        const std::string domain = at == std::string::npos ? "" : address.substr(at + 1);
        if (domain != "example.com" && domain != "mx.example.com") {
            return RecipientVerdict::kRelayDenied;
        }
        if (address.starts_with("unknown@")) {
            return RecipientVerdict::kUnknownUser;
        }
        if (address.starts_with("temp@")) {
            return RecipientVerdict::kTempFail;
        }
        return RecipientVerdict::kAccept;
    }
    Result<std::unique_ptr<IncomingMessage>> begin() override {
        if (begin_fails) {
            return fail(ErrorKind::kIo, "cannot begin");
        }
        messages.push_back(StoredMessage{QueueId{next_id++}, {}, {}, {}, false, false, 0, 0});
        return std::unique_ptr<IncomingMessage>(
            std::make_unique<FakeMessage>(*this, messages.size() - 1));
    }

    std::size_t committed_count() const {
        std::size_t n = 0;
        for (const auto& m : messages) {
            n += m.committed ? 1 : 0;
        }
        return n;
    }

    bool spool_full = false;
    bool begin_fails = false;
    std::uint64_t next_id = 0x1234567;
    std::vector<StoredMessage> messages;
    // Pending completions, run by the test (or by Harness right away).
    std::deque<std::function<void()>> pending;
    std::optional<Error> fail_commit;
    std::optional<Error> fail_append;
};

inline QueueId FakeMessage::id() const { return intake_.messages[index_].id; }
inline void FakeMessage::append(std::string data, std::function<void(Status)> done) {
    auto& m = intake_.messages[index_];
    ++m.appends;
    m.largest_append = std::max(m.largest_append, data.size());
    m.body += data;
    Status s;
    if (intake_.fail_append) {
        s = tl::unexpected(*intake_.fail_append);
    }
    intake_.pending.emplace_back([done = std::move(done), s] { done(s); });
}
inline void FakeMessage::commit(MessageInfo info, std::string head,
                                std::function<void(Result<CommitInfo>)> done) {
    auto& m = intake_.messages[index_];
    m.info = std::move(info);
    m.head = head;
    m.body = std::move(head) + m.body; // as the spool stores it
    if (intake_.fail_commit) {
        const Error e = *intake_.fail_commit;
        intake_.pending.emplace_back([done = std::move(done), e] { done(tl::unexpected(e)); });
        return;
    }
    intake_.pending.emplace_back([this, done = std::move(done)] {
        intake_.messages[index_].committed = true;
        done(CommitInfo{"normal"});
    });
}
inline void FakeMessage::rollback() { intake_.messages[index_].rolled_back = true; }

// Runs a session against the fake intake. With auto_complete the intake's
// completions are run at once; otherwise they wait in intake.pending for complete_one().
class Harness {
public:
    explicit Harness(SessionSettings settings = default_settings())
        : session_(with_clock(std::move(settings), clock), intake) {
        run(session_.greeting());
    }

    static SessionSettings default_settings() {
        SessionSettings s;
        s.hostname = "mx.example.com";
        s.client_addr = "192.0.2.7";
        return s;
    }

    // Feeds bytes and returns the replies they produced, as "code enhanced" joined by
    // " | " (the text is left out so tables stay short).
    std::string send(std::string_view bytes) {
        replies.clear();
        run(session_.feed(bytes));
        return codes();
    }

    std::string complete_one() {
        replies.clear();
        REQUIRE_FALSE(intake.pending.empty());
        auto f = std::move(intake.pending.front());
        intake.pending.pop_front();
        f();
        drain_results();
        return codes();
    }

    std::string codes() const {
        std::string out;
        for (const auto& r : replies) {
            if (!out.empty()) {
                out += " | ";
            }
            out += std::to_string(r.code);
            if (!r.enhanced.empty()) {
                out += " " + r.enhanced;
            }
        }
        return out;
    }

    Session& session() { return session_; }

    FakeClock clock{1'700'000'000'000};
    FakeIntake intake;
    std::vector<Reply> replies;
    std::string wire; // everything written, in order
    bool auto_complete = true;
    bool closed = false;
    int tls_starts = 0;
    std::size_t appends_seen = 0;

private:
    static SessionSettings with_clock(SessionSettings s, const FakeClock& c) {
        s.clock = &c;
        return s;
    }

    void run(Actions actions) {
        for (auto& a : actions) {
            if (auto* r = std::get_if<Reply>(&a)) {
                wire += r->wire();
                replies.push_back(std::move(*r));
            } else if (auto* ap = std::get_if<AppendBody>(&a)) {
                ++appends_seen;
                ap->message->append(std::move(ap->data),
                                    [this](Status s) { results_.emplace_back(s); });
            } else if (auto* c = std::get_if<CommitMessage>(&a)) {
                c->message->commit(std::move(c->info), std::move(c->head),
                                   [this](Result<CommitInfo> result) {
                                       commits_.emplace_back(std::move(result));
                                   });
            } else if (std::holds_alternative<StartTls>(a)) {
                ++tls_starts;
            } else if (std::holds_alternative<Close>(a)) {
                closed = true;
            }
        }
        if (auto_complete) {
            while (!intake.pending.empty()) {
                auto f = std::move(intake.pending.front());
                intake.pending.pop_front();
                f();
                drain_results();
            }
        }
    }

    // Completion callbacks only record; results are fed back here, outside the
    // callback, as the real driver does by posting to its executor.
    void drain_results() {
        while (!results_.empty() || !commits_.empty()) {
            if (!results_.empty()) {
                const Status s = results_.front();
                results_.pop_front();
                run(session_.on_append_done(s));
            } else {
                auto r = std::move(commits_.front());
                commits_.pop_front();
                run(session_.on_commit_result(std::move(r)));
            }
        }
    }

    Session session_;
    std::deque<Status> results_;
    std::deque<Result<CommitInfo>> commits_;
};

} // namespace spoold::smtp::test
