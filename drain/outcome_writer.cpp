#include "drain/outcome_writer.hpp"

#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <memory>
#include <mutex>
#include <utility>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "io/callback.hpp"

namespace spoold::drain {
namespace {

namespace asio = boost::asio;

bool final_without_delivery(spool::RcptState s) {
    return s == spool::RcptState::kFailed || s == spool::RcptState::kExpired;
}

// A delivery whose sender asked for a success report (RFC 3461 NOTIFY=SUCCESS) that no
// next hop gives in our place.
bool success_reported(const spool::Envelope& env, const spool::RecipientUpdate& u,
                      Handoff handoff) {
    return u.state == spool::RcptState::kDelivered && handoff != Handoff::kPassedOn &&
           u.index < env.recipients.size() &&
           (env.recipients[u.index].notify & spool::kNotifySuccess) != 0;
}

// One of our DSNs the smarthost refused for good (a DSN gets no DSN, so failing it would
// drop it): its failed recipients stay queued with the refusal, and the caller holds it.
bool hold_refused_dsn(const spool::Envelope& env, std::vector<spool::RecipientUpdate>& updates) {
    if ((env.flags & spool::kFlagDsn) == 0) {
        return false;
    }
    bool refused = false;
    for (spool::RecipientUpdate& u : updates) {
        if (u.state != spool::RcptState::kFailed || u.index >= env.recipients.size()) {
            continue;
        }
        refused = true;
        log::warn("event=dsn_undeliverable id={} to={} response={} action=held", env.id.text(),
                  log::quote(env.recipients[u.index].address), log::quote(u.response));
        u.state = spool::RcptState::kQueued;
    }
    return refused;
}

} // namespace

OutcomeWriter::OutcomeWriter(const asio::any_io_executor& executor, spool::Spool& spool,
                             DsnBuilder make_dsn, std::chrono::milliseconds linger)
    : spool_(spool), make_dsn_(std::move(make_dsn)), linger_(linger), linger_timer_(executor) {}

void OutcomeWriter::flush() {
    if (lingering_.empty()) {
        return;
    }
    linger_timer_.cancel();
    // Back to back, so the spool's writer finds them queued together: one commit.
    for (auto& submit : std::exchange(lingering_, {})) {
        submit();
    }
}

asio::awaitable<Status> OutcomeWriter::write_lingering(std::function<void(spool::Done)> submit) {
    if (linger_.count() <= 0) {
        co_return co_await write(std::move(submit));
    }
    std::function<void(spool::Done)> queue =
        [this, submit = std::move(submit)](spool::Done done) mutable {
            lingering_.push_back([submit = std::move(submit), done = std::move(done)]() mutable {
                submit(std::move(done));
            });
            if (lingering_.size() == 1) {
                linger_timer_.expires_after(linger_);
                linger_timer_.async_wait([alive = std::weak_ptr<char>(alive_),
                                          this](const boost::system::error_code& ec) {
                    if (!ec && alive.lock()) {
                        flush();
                    }
                });
            }
        };
    co_return co_await write(std::move(queue));
}

std::optional<spool::NewMessage>
OutcomeWriter::build_dsn(const spool::Envelope& env,
                         const std::vector<spool::RecipientUpdate>& updates,
                         const std::vector<Handoff>& handoffs) {
    if (!make_dsn_ || env.mail_from.empty()) {
        return std::nullopt;
    }
    std::vector<spool::RecipientUpdate> reported;
    std::vector<Handoff> reported_handoffs;
    for (std::size_t k = 0; k < updates.size(); ++k) {
        const spool::RecipientUpdate& u = updates[k];
        const Handoff handoff = k < handoffs.size() ? handoffs[k] : Handoff::kFinal;
        if (final_without_delivery(u.state) || success_reported(env, u, handoff)) {
            reported.push_back(u);
            reported_handoffs.push_back(handoff);
        }
    }
    if (reported.empty()) {
        return std::nullopt;
    }
    try {
        return make_dsn_(env, reported, reported_handoffs);
    } catch (const std::exception& e) {
        log::error("event=dsn_build_failed id={} error={}", env.id.text(), log::quote(e.what()));
    }
    return std::nullopt;
}

asio::awaitable<Status> OutcomeWriter::write(std::function<void(spool::Done)> submit) {
    co_return co_await io::from_callback<Status>(std::move(submit));
}

asio::awaitable<OutcomeWriter::Committed>
OutcomeWriter::commit(spool::Envelope env, std::vector<spool::RecipientUpdate> updates,
                      bool with_dsn, std::vector<Handoff> handoffs) {
    if (hold_refused_dsn(env, updates)) {
        // Recipients back to queued with the refusal recorded, then held: a crash between
        // the two leaves the DSN queued, tried again and held then; never dropped.
        std::function<void(spool::Done)> submit =
            [spool = &spool_, id = env.id, updates = std::move(updates)](spool::Done done) mutable {
                spool->record_outcome(id, std::move(updates), std::nullopt,
                                      [spool, id, done = std::move(done)](Status st) mutable {
                                          if (!st) {
                                              done(std::move(st));
                                              return;
                                          }
                                          spool->set_held(id, true, std::move(done));
                                      });
            };
        Committed held;
        held.status = co_await write(std::move(submit));
        if (held.status) {
            metrics::spoold_metrics().dsns_held_total.inc();
        }
        co_return held;
    }
    std::optional<spool::NewMessage> dsn;
    if (with_dsn) {
        dsn = build_dsn(env, updates, handoffs);
    }
    Committed out;
    if (dsn) {
        out.dsn = dsn->envelope.id;
    }
    spool::Spool* spool = &spool_;
    // Built before the co_await: g++ 12 mishandles capturing lambdas inside one.
    std::function<void(spool::Done)> submit = [spool, id = env.id, updates = std::move(updates),
                                               dsn = std::move(dsn)](spool::Done done) mutable {
        spool->record_outcome(id, std::move(updates), std::move(dsn), std::move(done));
    };
    out.status = co_await write_lingering(std::move(submit));
    if (!out.status) {
        out.dsn.reset();
    }
    co_return out;
}

std::optional<spool::NewMessage> OutcomeWriter::build_delay_warning(const spool::Envelope& env) {
    if (!make_dsn_ || env.mail_from.empty()) {
        return std::nullopt;
    }
    std::vector<spool::RecipientUpdate> waiting;
    for (std::uint32_t i = 0; i < env.recipients.size(); ++i) {
        const spool::Recipient& r = env.recipients[i];
        if (!spool::is_final(r.state)) {
            spool::RecipientUpdate u;
            u.index = i;
            u.state = r.state;
            u.next_attempt_ms = r.next_attempt_ms;
            u.response = r.last_response;
            u.count_attempt = false;
            waiting.push_back(std::move(u));
        }
    }
    if (waiting.empty()) {
        return std::nullopt;
    }
    try {
        return make_dsn_(env, waiting, {});
    } catch (const std::exception& e) {
        log::error("event=dsn_build_failed id={} error={}", env.id.text(), log::quote(e.what()));
    }
    return std::nullopt;
}

asio::awaitable<OutcomeWriter::Batch>
OutcomeWriter::warn_delayed(std::vector<spool::DelayWarning> items) {
    spool::Spool* spool = &spool_;
    std::function<void(spool::BatchDone)> submit =
        [spool, items = std::move(items)](spool::BatchDone done) mutable {
            spool->record_delay_warnings(std::move(items), std::move(done));
        };
    co_return co_await write_batch(std::move(submit));
}

asio::awaitable<OutcomeWriter::Batch> OutcomeWriter::expire(std::vector<spool::Expiry> items,
                                                            UnixMillis now) {
    spool::Spool* spool = &spool_;
    std::function<void(spool::BatchDone)> submit = [spool, items = std::move(items),
                                                    now](spool::BatchDone done) mutable {
        spool->expire(std::move(items), now, std::move(done));
    };
    co_return co_await write_batch(std::move(submit));
}

asio::awaitable<OutcomeWriter::Batch>
OutcomeWriter::write_batch(std::function<void(spool::BatchDone)> submit) {
    auto results = std::make_shared<std::vector<Status>>();
    std::function<void(spool::Done)> each = [submit = std::move(submit),
                                             results](spool::Done done) mutable {
        submit([results, done = std::move(done)](Status st, std::vector<Status> items) {
            *results = std::move(items);
            done(std::move(st));
        });
    };
    Batch out;
    out.status = co_await write(std::move(each));
    out.items = std::move(*results);
    co_return out;
}

asio::awaitable<Status>
OutcomeWriter::reclassify(std::vector<std::pair<QueueId, spool::Reclassification>> changes) {
    spool::Spool* spool = &spool_;
    std::function<void(spool::Done)> submit =
        [spool, changes = std::move(changes)](spool::Done done) mutable {
            struct Pending {
                std::mutex mutex;
                std::size_t left;
                Status first;
                spool::Done done;
            };
            auto pending = std::make_shared<Pending>();
            pending->left = changes.size();
            pending->done = std::move(done);
            if (changes.empty()) {
                pending->done(Status{});
                return;
            }
            for (auto& [id, change] : changes) {
                spool->reclassify(id, change, [pending](Status st) {
                    std::unique_lock lock(pending->mutex);
                    if (!st && pending->first) {
                        pending->first = std::move(st);
                    }
                    if (--pending->left == 0) {
                        lock.unlock();
                        pending->done(std::move(pending->first));
                    }
                });
            }
        };
    co_return co_await write(std::move(submit));
}

} // namespace spoold::drain
