#include "tools/spoolctl/xfer.hpp"

#include <condition_variable>
#include <deque>
#include <fmt/format.h>
#include <future>
#include <mutex>
#include <thread>

#include "common/address.hpp"
#include "common/xfer_claim.hpp"
#include "tools/spoolctl/verb_support.hpp"
#include "tools/spoolctl/writes.hpp"

namespace spoold::spoolctl {
namespace {

std::string notify_param(std::uint8_t bits) {
    if (bits == 0) {
        return {};
    }
    if ((bits & address::kNotifyNever) != 0) {
        return " NOTIFY=NEVER";
    }
    std::string out;
    for (const auto& [bit, word] : {std::pair{address::kNotifySuccess, "SUCCESS"},
                                    std::pair{address::kNotifyFailure, "FAILURE"},
                                    std::pair{address::kNotifyDelay, "DELAY"}}) {
        if ((bits & bit) != 0) {
            out += out.empty() ? " NOTIFY=" : ",";
            out += word;
        }
    }
    return out;
}

// Stored ORCPT is "addr-type;decoded"; the wire form xtext-encodes the address part.
std::string orcpt_param(const std::string& orcpt) {
    const auto semi = orcpt.find(';');
    if (orcpt.empty() || semi == std::string::npos) {
        return {};
    }
    return fmt::format(" ORCPT={};{}", orcpt.substr(0, semi),
                       address::encode_xtext(orcpt.substr(semi + 1)));
}

Status wait_done(const std::function<void(spool::Done)>& op) {
    std::promise<Status> promise;
    auto future = promise.get_future();
    op([&promise](Status st) { promise.set_value(std::move(st)); });
    return future.get();
}

// Worker threads, each with its own connection, taking messages from a queue whose length
// the write pipeline bounds (kMaxInFlight).
class Mover {
public:
    Mover(Context& ctx, RelayTarget target) : ctx_(ctx), target_(std::move(target)) {
        for (std::size_t i = 0; i < kXferConnections; ++i) {
            threads_.emplace_back([this] { work(); });
        }
    }
    Mover(const Mover&) = delete;
    Mover& operator=(const Mover&) = delete;
    ~Mover() {
        {
            const std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        cv_.notify_all();
        for (auto& t : threads_) {
            t.join();
        }
    }

    void submit(spool::Envelope env, spool::Done done) {
        {
            const std::lock_guard lock(mutex_);
            queue_.emplace_back(std::move(env), std::move(done));
        }
        cv_.notify_one();
    }

private:
    void work() {
        std::unique_ptr<RelayClient> client;
        std::string body;
        for (;;) {
            std::pair<spool::Envelope, spool::Done> job;
            {
                std::unique_lock lock(mutex_);
                cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) {
                    break;
                }
                job = std::move(queue_.front());
                queue_.pop_front();
            }
            move_one(client, body, job.first, std::move(job.second));
        }
        if (client) {
            client->quit();
        }
    }

    void move_one(std::unique_ptr<RelayClient>& client, std::string& body,
                  const spool::Envelope& seen, spool::Done done) {
        spool::Spool& s = *ctx_.spool;
        const QueueId id = seen.id;
        // Held first, so the daemon's drain does not deliver it while it is on the wire.
        const bool hold = !seen.held;
        if (hold) {
            if (auto st = wait_done([&](spool::Done d) { s.set_held(id, true, std::move(d)); });
                !st) {
                done(std::move(st));
                return;
            }
        }
        const auto fail = [&](Error e) {
            if (!hold) {
                done(tl::unexpected(std::move(e)));
                return;
            }
            s.set_held(id, false,
                       [done = std::move(done), e = std::move(e)](const Status&) mutable {
                           done(tl::unexpected(std::move(e)));
                       });
        };
        // The record as it is now that it is held (the drain may have delivered some of it).
        auto env = s.get(id);
        if (!env || !*env) {
            fail(env ? Error{ErrorKind::kNotFound, "gone"} : env.error());
            return;
        }
        if (auto st = read_message_into(ctx_, id, body); !st) {
            fail(st.error());
            return;
        }
        RelayMessage message = relay_message(**env, ctx_.classes.name((*env)->klass));
        message.body = body;
        if (!message.recipients.empty()) {
            if (!client || !client->usable()) {
                auto opened = RelayClient::open(target_);
                if (!opened) {
                    fail(opened.error());
                    return;
                }
                client = std::move(*opened);
            }
            if (auto st = client->send(message); !st) {
                fail(st.error());
                return;
            }
        }
        s.remove(id, std::move(done));
    }

    Context& ctx_;
    const RelayTarget target_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::pair<spool::Envelope, spool::Done>> queue_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

} // namespace

RelayMessage relay_message(const spool::Envelope& env, const std::string& class_name) {
    RelayMessage m;
    m.mail_from = env.mail_from;
    if ((env.flags & spool::kFlag8BitMime) != 0) {
        m.mail_params += " BODY=8BITMIME";
    }
    if ((env.flags & spool::kFlagSmtpUtf8) != 0) {
        m.mail_params += " SMTPUTF8";
    }
    if (!env.ret.empty()) {
        m.mail_params += " RET=" + env.ret;
    }
    if (!env.envid.empty()) {
        m.mail_params += " ENVID=" + address::encode_xtext(env.envid);
    }
    m.mail_params += fmt::format(" {}={}", kXferParam,
                                 format_xfer_claim({class_name, env.arrival_ms, env.expires_ms}));
    for (const auto& r : env.recipients) {
        if (pending(r)) {
            m.recipients.push_back({r.address, notify_param(r.notify) + orcpt_param(r.orcpt)});
        }
    }
    return m;
}

int verb_xfer(Context& ctx) {
    if (ctx.cl.to.size() != 1) {
        return usage_error(ctx, "xfer needs one --to HOST:PORT");
    }
    auto target = parse_relay_target(ctx.cl.to.front());
    if (!target) {
        return usage_error(ctx, target.error().message);
    }
    if (ctx.config) {
        target->helo = ctx.config->hostname;
    }
    Mover mover(ctx, std::move(*target));
    WriteOp op;
    op.done_word = "moved";
    op.question_tail = " to " + ctx.cl.to.front();
    op.applies = [](const spool::Envelope&) { return true; };
    op.apply = [&mover](spool::Spool&, const spool::Envelope& env, spool::Done d) {
        mover.submit(env, std::move(d));
    };
    return run_writes(ctx, ctx.cl.operands, op);
}

} // namespace spoold::spoolctl
