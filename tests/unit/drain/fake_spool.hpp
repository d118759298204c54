// An in-memory spool::Spool for the drain's tests: same read/write contract, no LMDB.
// Writes apply at once and call `done` inline (the real spool calls it from its writer
// thread; the drain posts either way). Not thread-safe; not a model of durability.
#pragma once

#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "spool/spool.hpp"

namespace spoold::drain::test {

class FakeSpool final : public spool::Spool {
public:
    explicit FakeSpool(const Clock& clock) : clock_(clock) {}

    // ---- test helpers ----
    QueueId add(spool::ClassId klass, std::vector<std::string> rcpts,
                std::string body = "hello\r\n", std::string from = "sender@example.org") {
        spool::Envelope e;
        e.id = QueueId{++next_id_};
        e.arrival_ms = clock_.now_ms();
        e.klass = klass;
        e.mail_from = std::move(from);
        e.size = body.size();
        for (auto& r : rcpts) {
            spool::Recipient rc;
            rc.address = std::move(r);
            e.recipients.push_back(std::move(rc));
        }
        const QueueId id = e.id;
        store(std::move(e), std::move(body));
        return id;
    }
    void set_expires(QueueId id, UnixMillis at) {
        auto& e = msgs_.at(id.value).env;
        e.expires_ms = at;
        reindex(id.value);
    }
    void set_flags(QueueId id, std::uint32_t flags) { msgs_.at(id.value).env.flags = flags; }
    bool contains(QueueId id) const { return msgs_.contains(id.value); }
    const spool::Envelope& env(QueueId id) const { return msgs_.at(id.value).env; }
    std::size_t size() const { return msgs_.size(); }
    std::size_t ready_count() const {
        std::size_t n = 0;
        for (const auto& r : ready_) {
            n += r.size();
        }
        return n;
    }
    std::vector<spool::NewMessage> dsns;
    std::vector<std::pair<QueueId, std::vector<spool::RecipientUpdate>>> outcomes;
    std::size_t get_calls = 0;
    std::map<std::string, std::string> meta;
    bool fail_reads = false;

    // ---- spool::Spool ----
    QueueId new_id() override { return QueueId{++next_id_}; }

    void enqueue(spool::NewMessage message, spool::Done done) override {
        message.envelope.id = new_id();
        store(std::move(message.envelope), std::move(message.body));
        done({});
    }
    void append_staged(QueueId, std::string, spool::Done done) override { done({}); }
    void enqueue_staged(spool::NewMessage message, spool::Done done) override {
        enqueue(std::move(message), std::move(done));
    }
    void discard_staged(QueueId, spool::Done done) override { done({}); }

    void record_outcome(QueueId id, std::vector<spool::RecipientUpdate> updates,
                        std::optional<spool::NewMessage> dsn, spool::Done done) override {
        outcomes.emplace_back(id, updates);
        auto it = msgs_.find(id.value);
        if (it == msgs_.end()) {
            done(fail(ErrorKind::kNotFound, "no such message"));
            return;
        }
        auto& e = it->second.env;
        for (const auto& u : updates) {
            auto& r = e.recipients.at(u.index);
            r.state = u.state;
            r.next_attempt_ms = u.next_attempt_ms;
            r.last_response = u.response;
            if (u.count_attempt) {
                ++r.attempts;
            }
        }
        if (dsn) {
            dsns.push_back(*dsn);
            dsn->envelope.id = new_id();
            dsn->envelope.flags |= spool::kFlagDsn;
            store(std::move(dsn->envelope), std::move(dsn->body));
        }
        reindex(id.value);
        done({});
    }
    void set_held(QueueId id, bool held, spool::Done done) override {
        msgs_.at(id.value).env.held = held;
        reindex(id.value);
        done({});
    }
    void set_class(QueueId id, spool::ClassId klass, spool::Done done) override {
        unindex(id.value);
        msgs_.at(id.value).env.klass = klass;
        reindex(id.value);
        done({});
    }
    void flush(QueueId id, spool::Done done) override {
        for (auto& r : msgs_.at(id.value).env.recipients) {
            if (r.state == spool::RcptState::kDeferred) {
                r.state = spool::RcptState::kQueued;
            }
        }
        reindex(id.value);
        done({});
    }
    void remove(QueueId id, spool::Done done) override {
        unindex(id.value);
        msgs_.erase(id.value);
        done({});
    }
    void promote_due(UnixMillis now, spool::Done done) override {
        for (auto& [k, m] : msgs_) {
            bool changed = false;
            for (auto& r : m.env.recipients) {
                if (r.state == spool::RcptState::kDeferred && r.next_attempt_ms <= now) {
                    r.state = spool::RcptState::kQueued;
                    changed = true;
                }
            }
            if (changed) {
                reindex(k);
            }
        }
        done({});
    }
    void hold_expired(QueueId id, spool::Done done) override {
        auto& e = msgs_.at(id.value).env;
        e.held = true;
        e.flags |= spool::kFlagExpiredHold;
        e.expires_ms = 0;
        reindex(id.value);
        done({});
    }
    void put_meta(std::string key, std::string value, spool::Done done) override {
        meta[key] = value;
        done({});
    }

    Result<spool::Counters> counters() override { return spool::Counters{}; }
    Result<std::optional<spool::Envelope>> get(QueueId id) override {
        ++get_calls;
        if (fail_reads) {
            return fail(ErrorKind::kIo, "injected");
        }
        const auto it = msgs_.find(id.value);
        if (it == msgs_.end()) {
            return std::optional<spool::Envelope>{};
        }
        return std::optional<spool::Envelope>{it->second.env};
    }
    Result<spool::BodyPiece> read_body(QueueId id, std::uint32_t from_chunk,
                                       std::size_t max_bytes) override {
        const auto it = msgs_.find(id.value);
        if (it == msgs_.end()) {
            return fail(ErrorKind::kNotFound, "no such message");
        }
        // A "chunk" here is a byte offset: enough to exercise piecewise reading.
        const std::string& b = it->second.body;
        spool::BodyPiece p;
        const std::size_t from = std::min<std::size_t>(from_chunk, b.size());
        p.data = b.substr(from, max_bytes);
        p.next_chunk = static_cast<std::uint32_t>(from + p.data.size());
        p.done = p.next_chunk >= b.size();
        return p;
    }
    Result<std::vector<QueueId>> ready_after(spool::ClassId klass, QueueId after,
                                             std::size_t max) override {
        if (fail_reads) {
            return fail(ErrorKind::kIo, "injected");
        }
        std::vector<QueueId> out;
        const auto& idx = ready_.at(klass);
        for (auto it = idx.upper_bound(after.value); it != idx.end() && out.size() < max; ++it) {
            out.push_back(QueueId{*it});
        }
        return out;
    }
    Result<std::vector<QueueId>> due(UnixMillis now, std::size_t max) override {
        std::vector<QueueId> out;
        for (const auto& [k, m] : msgs_) {
            if (out.size() < max && spool_state(m.env) == State::kDeferred &&
                next_due_of(m.env) <= now) {
                out.push_back(QueueId{k});
            }
        }
        return out;
    }
    Result<std::vector<QueueId>> expired(UnixMillis now, std::size_t max) override {
        std::vector<QueueId> out;
        for (const auto& [k, m] : msgs_) {
            if (out.size() < max && m.env.expires_ms != 0 && m.env.expires_ms <= now) {
                out.push_back(QueueId{k});
            }
        }
        return out;
    }
    Result<std::vector<spool::Envelope>> envelopes_after(QueueId after, std::size_t max) override {
        std::vector<spool::Envelope> out;
        for (auto it = msgs_.upper_bound(after.value); it != msgs_.end() && out.size() < max;
             ++it) {
            out.push_back(it->second.env);
        }
        return out;
    }
    Result<std::optional<QueueId>> oldest() override {
        if (msgs_.empty()) {
            return std::optional<QueueId>{};
        }
        return std::optional<QueueId>{QueueId{msgs_.begin()->first}};
    }
    Result<std::optional<std::string>> get_meta(std::string_view key) override {
        const auto it = meta.find(std::string(key));
        if (it == meta.end()) {
            return std::optional<std::string>{};
        }
        return std::optional<std::string>{it->second};
    }
    Result<spool::SpaceInfo> space() override { return spool::SpaceInfo{}; }

private:
    enum class State { kReady, kDeferred, kHeld, kDone };
    struct Stored {
        spool::Envelope env;
        std::string body;
    };

    static bool final_state(spool::RcptState s) {
        return s == spool::RcptState::kDelivered || s == spool::RcptState::kFailed ||
               s == spool::RcptState::kExpired;
    }
    static State spool_state(const spool::Envelope& e) {
        bool queued = false;
        bool deferred = false;
        for (const auto& r : e.recipients) {
            queued = queued || r.state == spool::RcptState::kQueued;
            deferred = deferred || r.state == spool::RcptState::kDeferred;
        }
        if (!queued && !deferred) {
            return State::kDone;
        }
        if (e.held) {
            return State::kHeld;
        }
        return queued ? State::kReady : State::kDeferred;
    }
    static UnixMillis next_due_of(const spool::Envelope& e) {
        UnixMillis d = 0;
        for (const auto& r : e.recipients) {
            if (r.state == spool::RcptState::kDeferred && (d == 0 || r.next_attempt_ms < d)) {
                d = r.next_attempt_ms;
            }
        }
        return d;
    }

    void store(spool::Envelope e, std::string body) {
        const std::uint64_t k = e.id.value;
        next_id_ = std::max(next_id_, k);
        msgs_[k] = Stored{std::move(e), std::move(body)};
        reindex(k);
    }
    void unindex(std::uint64_t k) {
        for (auto& r : ready_) {
            r.erase(k);
        }
    }
    void reindex(std::uint64_t k) {
        unindex(k);
        const auto it = msgs_.find(k);
        if (it == msgs_.end()) {
            return;
        }
        switch (spool_state(it->second.env)) {
        case State::kReady: ready_.at(it->second.env.klass).insert(k); break;
        case State::kDone: msgs_.erase(it); break;
        case State::kDeferred:
        case State::kHeld: break;
        }
    }

    const Clock& clock_;
    std::uint64_t next_id_ = 1000;
    std::map<std::uint64_t, Stored> msgs_;
    std::array<std::set<std::uint64_t>, spool::kMaxClasses> ready_;
};

} // namespace spoold::drain::test
