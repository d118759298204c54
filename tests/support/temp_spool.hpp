// The real spool (spool::Spool::open, LMDB) in a temp dir of its own, for the tests of the
// spool's users (drain, scheduler, intake): message builders and synchronous reads and
// writes. It re-implements nothing of the spool; FaultySpool only fails chosen reads.
#pragma once

#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "spool/spool.hpp"
#include "tests/unit/spool/spool_test_support.hpp"

namespace spoold::test {

// One message for TempSpool::add_all.
struct TestMessage {
    spool::ClassId klass = 1;
    std::vector<std::string> recipients;
    std::string body = "hello\r\n";
    std::string from = "sender@example.org";
    UnixMillis expires_ms = 0; // 0 = never
    std::uint32_t flags = 0;
    std::uint8_t notify = 0;              // every recipient's RFC 3461 NOTIFY (spool::NotifyBits)
    std::optional<UnixMillis> arrival_ms; // none: the clock's now
};

class TempSpool {
public:
    explicit TempSpool(const Clock& clock) : clock_(clock) {
        spool::SpoolOptions o;
        o.path = dir_.sub("spool");
        o.max_size_bytes = 1ULL << 30U; // sparse: the file grows only as pages are used
        o.clock = &clock;
        spool_ = spool::test::open_spool(o);
    }

    spool::Spool& get() { return *spool_; }
    spool::Spool* operator->() { return spool_.get(); }

    // Enqueues one message (arrival = the clock's now) and returns after its commit.
    QueueId add(spool::ClassId klass, std::vector<std::string> recipients,
                std::string body = "hello\r\n", std::string from = "sender@example.org",
                UnixMillis expires_ms = 0) {
        return add_all({TestMessage{klass, std::move(recipients), std::move(body), std::move(from),
                                    expires_ms, 0}})
            .front();
    }
    // A DSN as daemon/dsn_hook spools it: from the null sender, flagged kFlagDsn.
    QueueId add_dsn(std::string to, std::string body = "DSN\r\n") {
        return add_all({TestMessage{0, {std::move(to)}, std::move(body), "", 0, spool::kFlagDsn}})
            .front();
    }
    // Enqueues all of `messages` at once (a few group commits, not one per message) and
    // returns their ids in order after every commit is done.
    std::vector<QueueId> add_all(std::vector<TestMessage> messages) {
        std::vector<QueueId> ids;
        auto pending = std::make_shared<std::atomic<std::size_t>>(messages.size());
        auto failed = std::make_shared<std::atomic<bool>>(false);
        for (auto& m : messages) {
            spool::NewMessage n;
            n.envelope.id = spool_->new_id();
            n.envelope.arrival_ms = m.arrival_ms.value_or(clock_.now_ms());
            n.envelope.klass = m.klass;
            n.envelope.mail_from = std::move(m.from);
            n.envelope.expires_ms = m.expires_ms;
            n.envelope.flags = m.flags;
            for (auto& r : m.recipients) {
                spool::Recipient rc;
                rc.address = std::move(r);
                rc.notify = m.notify;
                n.envelope.recipients.push_back(std::move(rc));
            }
            n.body = std::move(m.body);
            ids.push_back(n.envelope.id);
            spool_->enqueue(std::move(n), [pending, failed](Status st) {
                if (!st) {
                    failed->store(true);
                }
                pending->fetch_sub(1);
            });
        }
        // A generous deadline: 100,000 commits' worth under ASan on a busy machine.
        REQUIRE(
            spool::test::eventually([&] { return pending->load() == 0; }, std::chrono::minutes(2)));
        REQUIRE_FALSE(failed->load());
        return ids;
    }

    bool contains(QueueId id) {
        auto got = spool_->get(id);
        REQUIRE(got.has_value());
        return got->has_value();
    }
    // A copy of the stored envelope as it is now (the message must be in the spool).
    spool::Envelope env(QueueId id) {
        auto got = spool_->get(id);
        REQUIRE(got.has_value());
        REQUIRE(got->has_value());
        return std::move(**got);
    }
    // Messages in the spool (every message is counted in exactly one state).
    std::uint64_t size() {
        auto c = spool_->counters();
        REQUIRE(c.has_value());
        return c->total_messages();
    }

    // ---- synchronous writes: return after the commit ----
    void set_meta(std::string key, std::string value) {
        REQUIRE(wait([&](spool::Done d) { spool_->put_meta(key, value, std::move(d)); }));
    }
    void remove(QueueId id) {
        REQUIRE(wait([&](spool::Done d) { spool_->remove(id, std::move(d)); }));
    }
    void set_held(QueueId id, bool held) {
        REQUIRE(wait([&](spool::Done d) { spool_->set_held(id, held, std::move(d)); }));
    }
    void set_class(QueueId id, spool::ClassId klass) {
        REQUIRE(wait([&](spool::Done d) { spool_->set_class(id, klass, std::move(d)); }));
    }
    void record_outcome(QueueId id, std::vector<spool::RecipientUpdate> updates) {
        REQUIRE(wait([&](spool::Done d) {
            spool_->record_outcome(id, std::move(updates), std::nullopt, std::move(d));
        }));
    }

private:
    bool wait(const std::function<void(spool::Done)>& submit) {
        const Status st = spool_->wait(submit);
        if (!st) {
            MESSAGE("spool write failed: " << st.error().describe());
        }
        return st.has_value();
    }

    const Clock& clock_;
    spool::test::TempDir dir_;
    std::unique_ptr<spool::Spool> spool_;
};

// A thin decorator over a real spool that fails reads on demand (the Nth one from now, and
// every later one until heal()), as Beast's fail_count does. Everything else is forwarded.
class FaultySpool final : public spool::Spool {
public:
    explicit FaultySpool(spool::Spool& inner) : inner_(inner) {}

    // Read number `n` from now (0 = the next one) and every read after it fail with kIo.
    void fail_reads_from(std::size_t n) { reads_before_failure_ = static_cast<long>(n); }
    void heal() { reads_before_failure_ = -1; }
    // Reads forwarded or failed so far: what a caller's work cost.
    std::size_t reads() const { return reads_; }
    // Called with `max` as each promote_due is submitted (a test times or counts them).
    std::function<void(std::size_t max)> on_promote;
    // While set, record_outcome calls wait here, in order, until release_outcomes() submits
    // them and stops holding (an outcome that is not committed yet, for as long as a test
    // needs).
    bool hold_outcomes = false;
    std::size_t held_outcomes() const { return held_.size(); }
    void release_outcomes() {
        hold_outcomes = false;
        for (auto& submit : std::exchange(held_, {})) {
            submit();
        }
    }
    // Called with the batch's size as each record_delay_warnings is submitted.
    std::function<void(std::size_t n)> on_delay_warnings;
    // Called with the batch's size as each expire is submitted.
    std::function<void(std::size_t n)> on_expire;
    // Called with `max` as each sweep_removed_recipients is submitted.
    std::function<void(std::size_t max)> on_sweep;

    QueueId new_id() override { return inner_.new_id(); }
    void on_arrival(ArrivalListener l) override { inner_.on_arrival(std::move(l)); }
    void enqueue(spool::NewMessage m, spool::Done d) override {
        inner_.enqueue(std::move(m), std::move(d));
    }
    void append_staged(QueueId id, std::string c, spool::Done d) override {
        inner_.append_staged(id, std::move(c), std::move(d));
    }
    void enqueue_staged(spool::NewMessage m, spool::Done d) override {
        inner_.enqueue_staged(std::move(m), std::move(d));
    }
    void discard_staged(QueueId id, spool::Done d) override {
        inner_.discard_staged(id, std::move(d));
    }
    void record_outcome(QueueId id, std::vector<spool::RecipientUpdate> u,
                        std::optional<spool::NewMessage> dsn, spool::Done d) override {
        if (hold_outcomes) {
            held_.push_back(
                [this, id, u = std::move(u), dsn = std::move(dsn), d = std::move(d)]() mutable {
                    inner_.record_outcome(id, std::move(u), std::move(dsn), std::move(d));
                });
            return;
        }
        inner_.record_outcome(id, std::move(u), std::move(dsn), std::move(d));
    }
    void record_delay_warnings(std::vector<spool::DelayWarning> items,
                               spool::BatchDone d) override {
        if (on_delay_warnings) {
            on_delay_warnings(items.size());
        }
        inner_.record_delay_warnings(std::move(items), std::move(d));
    }
    void set_held(QueueId id, bool held, spool::Done d) override {
        inner_.set_held(id, held, std::move(d));
    }
    void set_class(QueueId id, spool::ClassId k, spool::Done d) override {
        inner_.set_class(id, k, std::move(d));
    }
    void flush(QueueId id, spool::Done d) override { inner_.flush(id, std::move(d)); }
    void remove(QueueId id, spool::Done d) override { inner_.remove(id, std::move(d)); }
    void promote_due(UnixMillis now, std::size_t max, spool::Done d) override {
        if (on_promote) {
            on_promote(max);
        }
        inner_.promote_due(now, max, std::move(d));
    }
    void expire(std::vector<spool::Expiry> items, UnixMillis now, spool::BatchDone d) override {
        if (on_expire) {
            on_expire(items.size());
        }
        inner_.expire(std::move(items), now, std::move(d));
    }
    void hold_expired(QueueId id, spool::Done d) override { inner_.hold_expired(id, std::move(d)); }
    void sweep_removed_recipients(std::size_t max, spool::CountDone d) override {
        if (on_sweep) {
            on_sweep(max);
        }
        inner_.sweep_removed_recipients(max, std::move(d));
    }
    void put_meta(std::string k, std::string v, spool::Done d) override {
        inner_.put_meta(std::move(k), std::move(v), std::move(d));
    }

    Result<spool::Counters> counters() override {
        return read([&] { return inner_.counters(); });
    }
    Result<std::optional<spool::Envelope>> get(QueueId id) override {
        return read([&] { return inner_.get(id); });
    }
    Result<spool::BodyPiece> read_body(QueueId id, std::uint32_t from, std::size_t max) override {
        return read([&] { return inner_.read_body(id, from, max); });
    }
    Result<std::vector<QueueId>> ready_after(spool::ClassId k, QueueId after,
                                             std::size_t max) override {
        return read([&] { return inner_.ready_after(k, after, max); });
    }
    Result<std::vector<QueueId>> due(UnixMillis now, std::size_t max) override {
        return read([&] { return inner_.due(now, max); });
    }
    Result<std::vector<QueueId>> expired(UnixMillis now, std::size_t max) override {
        return read([&] { return inner_.expired(now, max); });
    }
    Result<std::vector<spool::Envelope>> envelopes_after(QueueId after, std::size_t max) override {
        return read([&] { return inner_.envelopes_after(after, max); });
    }
    Result<std::optional<QueueId>> oldest() override {
        return read([&] { return inner_.oldest(); });
    }
    Result<std::optional<std::string>> get_meta(std::string_view key) override {
        return read([&] { return inner_.get_meta(key); });
    }
    Result<spool::SpaceInfo> space() override {
        return read([&] { return inner_.space(); });
    }
    Result<std::optional<QueueId>> newest() override {
        return read([&] { return inner_.newest(); });
    }
    Result<std::uint64_t> removed_recipients_pending() override {
        return read([&] { return inner_.removed_recipients_pending(); });
    }
    std::uint32_t format() const override { return inner_.format(); }
    Result<std::vector<QueueId>> dsns_after(QueueId after, std::size_t max) override {
        return read([&] { return inner_.dsns_after(after, max); });
    }
    Result<spool::IdPage> recipient_page(std::string_view address, spool::AddressForm form,
                                         char delimiter, std::string_view resume,
                                         std::size_t max) override {
        return read([&] { return inner_.recipient_page(address, form, delimiter, resume, max); });
    }
    Result<std::vector<QueueId>> recipient_after(std::string_view address, QueueId after,
                                                 std::size_t max) override {
        return read([&] { return inner_.recipient_after(address, after, max); });
    }
    Result<std::vector<std::string>> ready_domains(spool::ClassId k, std::size_t max) override {
        return read([&] { return inner_.ready_domains(k, max); });
    }
    Result<std::vector<QueueId>> ready_in_domain(spool::ClassId k, std::string_view domain,
                                                 QueueId after, std::size_t max) override {
        return read([&] { return inner_.ready_in_domain(k, domain, after, max); });
    }

private:
    template <typename F> auto read(F&& f) -> decltype(f()) {
        ++reads_;
        if (reads_before_failure_ >= 0 && reads_before_failure_-- == 0) {
            reads_before_failure_ = 0; // stays failing until heal()
            return fail(ErrorKind::kIo, "injected read failure");
        }
        return f();
    }

    spool::Spool& inner_;
    long reads_before_failure_ = -1; // -1 = never fail
    std::size_t reads_ = 0;
    std::vector<std::function<void()>> held_; // record_outcome calls, while hold_outcomes
};

} // namespace spoold::test
