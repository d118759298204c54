#include "daemon/spool_intake.hpp"

#include <atomic>
#include <mutex>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "policy/header_scan.hpp"

namespace spoold::daemon {
namespace {

class SpoolIncomingMessage final : public smtp::IncomingMessage {
public:
    SpoolIncomingMessage(spool::Spool& spool, std::shared_ptr<const IntakeHooks> hooks,
                         const Clock& clock, std::shared_ptr<IntakeCounters> shared)
        : spool_(spool), hooks_(std::move(hooks)), id_(spool.new_id()), arrival_ms_(clock.now_ms()),
          shared_(std::move(shared)) {}

    ~SpoolIncomingMessage() override { rollback(); }

    QueueId id() const override { return id_; }

    void append(std::string data, std::function<void(Status)> done) override {
        size_ += data.size();
        buffer_ += data;
        if (buffer_.size() < kStageThreshold) {
            done(Status{});
            return;
        }
        // Large message: move what we hold into the spool's staging area so memory
        // stays bounded by a few chunks whatever the message size.
        staged_ = true;
        std::string chunk;
        chunk.swap(buffer_);
        shared_->budget.fetch_sub(static_cast<std::int64_t>(chunk.size()),
                                  std::memory_order_relaxed);
        spool_.append_staged(id_, std::move(chunk), std::move(done));
    }

    void commit(smtp::MessageInfo info, std::string head,
                std::function<void(Result<smtp::CommitInfo>)> done) override {
        committed_ = true;
        size_ += head.size();
        const ClassifyInput input{&info, std::string_view(head).substr(0, policy::kHeaderScanBytes),
                                  size_};
        const ClassDecision decision = hooks_->classify(input, arrival_ms_);

        spool::NewMessage msg;
        spool::Envelope& env = msg.envelope;
        env.id = id_;
        env.arrival_ms = decision.arrival_ms.value_or(arrival_ms_);
        env.klass = decision.klass;
        env.size = size_;
        env.mail_from = std::move(info.mail_from);
        env.mail_params = std::move(info.mail_params);
        env.ret = std::move(info.ret);
        env.envid = std::move(info.envid);
        env.client_addr = std::move(info.client_addr);
        env.helo = std::move(info.helo);
        env.tls = std::move(info.tls);
        env.expires_ms = decision.expires_ms;
        if (!info.hold_reason.empty()) {
            // Quarantined by a filter: stored held, out of the drain's way until released.
            env.held = true;
            env.hold_reason = std::move(info.hold_reason);
        }
        if (info.smtputf8) {
            env.flags |= spool::kFlagSmtpUtf8;
        }
        if (info.eight_bit_mime) {
            env.flags |= spool::kFlag8BitMime;
        }
        env.recipients.reserve(info.recipients.size());
        for (auto& r : info.recipients) {
            spool::Recipient rcpt;
            rcpt.address = std::move(r.address);
            rcpt.orcpt = std::move(r.orcpt);
            rcpt.notify = r.notify;
            env.recipients.push_back(std::move(rcpt));
        }
        shared_->budget.fetch_sub(static_cast<std::int64_t>(head.size() + buffer_.size()) +
                                      kMessageOverheadBytes,
                                  std::memory_order_relaxed);
        if (staged_) {
            // The header section goes in front of the chunks staged while it could still
            // change (filters edit it at the end of the message).
            msg.head = std::move(head);
            msg.body.swap(buffer_);
        } else {
            msg.body = std::move(head);
            msg.body += buffer_;
            std::string().swap(buffer_);
        }

        auto finish = [done = std::move(done), name = decision.name, shared = shared_,
                       size = size_](Status st) {
            auto& m = metrics::spoold_metrics();
            if (!st) {
                const bool full = st.error().kind == ErrorKind::kSpoolFull ||
                                  st.error().kind == ErrorKind::kDiskFull;
                m.messages_rejected_total
                    .with({std::string(full ? metrics::kRejectSpoolFull
                                            : metrics::kRejectLocalError)})
                    .inc();
                done(tl::unexpected(st.error()));
                return;
            }
            shared->accepted.fetch_add(1, std::memory_order_relaxed);
            m.messages_accepted_total.with({name}).inc();
            m.accepted_bytes_total.inc(size);
            done(smtp::CommitInfo{name});
        };
        if (staged_) {
            spool_.enqueue_staged(std::move(msg), std::move(finish));
        } else {
            spool_.enqueue(std::move(msg), std::move(finish));
        }
    }

    void rollback() override {
        if (committed_ || rolled_back_) {
            return;
        }
        rolled_back_ = true;
        if (staged_) {
            const QueueId id = id_;
            spool_.discard_staged(id_, [id](Status st) {
                if (!st) {
                    log::warn("event=staging_discard_failed id={} error={}", id.text(),
                              log::quote(st.error().describe()));
                }
            });
        }
    }

private:
    spool::Spool& spool_;
    std::shared_ptr<const IntakeHooks> hooks_;
    QueueId id_;
    UnixMillis arrival_ms_;
    std::string buffer_;
    std::shared_ptr<IntakeCounters> shared_;
    std::uint64_t size_ = 0;
    bool staged_ = false;
    bool committed_ = false;
    bool rolled_back_ = false;
};

} // namespace

SpoolIntake::SpoolIntake(spool::Spool& spool, IntakeHooks hooks, const Clock& clock)
    : spool_(spool), hooks_(std::make_shared<const IntakeHooks>(std::move(hooks))), clock_(clock) {}

Status SpoolIntake::admit() {
    if (accepting_.load(std::memory_order_relaxed) &&
        shared_->budget.load(std::memory_order_relaxed) <= 0 && accepting_.exchange(false)) {
        // Refusing until the next sample says how much room is really left.
        log::warn(
            "event=admission state=refusing reason=\"the room below the watermark at the last "
            "sample is used up\"");
    }
    if (!accepting_.load(std::memory_order_relaxed)) {
        metrics::spoold_metrics()
            .messages_rejected_total.with({std::string(metrics::kRejectSpoolFull)})
            .inc();
        return fail(ErrorKind::kSpoolFull, "spool above its watermark");
    }
    return {};
}

smtp::RecipientVerdict SpoolIntake::check_recipient(const std::string& address) {
    return hooks()->check_recipient(address);
}

Result<std::unique_ptr<smtp::IncomingMessage>> SpoolIntake::begin() {
    return std::make_unique<SpoolIncomingMessage>(spool_, hooks(), clock_, shared_);
}

void SpoolIntake::set_accepting(bool accepting, const std::string& reason, std::int64_t budget) {
    shared_->budget.store(budget, std::memory_order_relaxed);
    const bool was = accepting_.exchange(accepting);
    if (was != accepting) {
        if (accepting) {
            log::info("event=admission state=accepting");
        } else {
            log::warn("event=admission state=refusing reason={}", log::quote(reason));
        }
    }
}

void SpoolIntake::set_hooks(IntakeHooks hooks) {
    auto fresh = std::make_shared<const IntakeHooks>(std::move(hooks));
    const std::lock_guard lock(hooks_mutex_);
    hooks_ = std::move(fresh);
}

std::shared_ptr<const IntakeHooks> SpoolIntake::hooks() const {
    const std::lock_guard lock(hooks_mutex_);
    return hooks_;
}

} // namespace spoold::daemon
