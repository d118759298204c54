#include "daemon/dsn_hook.hpp"

#include <algorithm>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "policy/dsn.hpp"
#include "policy/retention.hpp"

namespace spoold::daemon {
namespace {

static_assert(policy::kDsnNotifyNever == spool::kNotifyNever);
static_assert(policy::kDsnNotifySuccess == spool::kNotifySuccess);
static_assert(policy::kDsnNotifyFailure == spool::kNotifyFailure);
static_assert(policy::kDsnNotifyDelay == spool::kNotifyDelay);

// The DSN returns the original's header (RET=HDRS) or all of it (RET=FULL) up to this;
// reading it is a few short spool read transactions.
constexpr std::size_t kMaxReturnedBytes = 10ULL << 20U;
constexpr std::size_t kHeaderOnlyBytes = 256 * 1024;
constexpr std::size_t kReadPiece = 256 * 1024;

std::string read_original(spool::Spool& spool, const spool::Envelope& env, std::size_t limit) {
    std::string out;
    std::uint32_t chunk = 0;
    while (out.size() < limit) {
        auto piece = spool.read_body(env.id, chunk, kReadPiece);
        if (!piece) {
            log::warn("event=dsn_original_unreadable id={} error={}", env.id.text(),
                      log::quote(piece.error().describe()));
            break;
        }
        out += piece->data;
        if (piece->done) {
            break;
        }
        chunk = piece->next_chunk;
    }
    if (out.size() > limit) {
        out.resize(limit);
    }
    return out;
}

// Delivered: into the mailbox, or relayed to a next hop that reports nothing; final
// without delivery: failed or expired; not final yet: a delay warning.
policy::DsnAction dsn_action(spool::RcptState state, drain::Handoff handoff) {
    switch (state) {
    case spool::RcptState::kDelivered:
        return handoff == drain::Handoff::kRelayed ? policy::DsnAction::kRelayed
                                                   : policy::DsnAction::kDelivered;
    case spool::RcptState::kExpired: return policy::DsnAction::kExpired;
    case spool::RcptState::kFailed: return policy::DsnAction::kFailed;
    case spool::RcptState::kQueued:
    case spool::RcptState::kDeferred: break;
    }
    return policy::DsnAction::kDelayed;
}

} // namespace

drain::DsnBuilder
make_dsn_builder(spool::Spool& spool,
                 const std::shared_ptr<const std::shared_ptr<const policy::Config>>& config,
                 const Clock& clock) {
    // Registered now, so it reads 0 from the start rather than appearing with the first.
    metrics::Counter& unknown = metrics::global().counter(
        std::string(kUnknownRecipientMetric),
        "DSNs for recipients the mailstore said do not exist (5.1.1): backscatter to "
        "possibly forged senders, which a recipient directory prevents.");
    return [&spool, config, &clock, &unknown](
               const spool::Envelope& env, const std::vector<spool::RecipientUpdate>& updates,
               const std::vector<drain::Handoff>& handoffs) -> std::optional<spool::NewMessage> {
        const policy::Config& cfg = **config;
        const UnixMillis now = clock.now_ms();
        policy::DsnInput in;
        in.reporting_host = cfg.hostname;
        in.from_address = policy::dsn_from_address(cfg);
        in.envelope_sender = env.mail_from;
        in.envid = env.envid;
        in.ret = env.ret;
        in.queue_id = env.id.text();
        in.arrival_ms = env.arrival_ms;
        in.now_ms = now;
        in.max_full_bytes = kMaxReturnedBytes;
        for (std::size_t k = 0; k < updates.size(); ++k) {
            const spool::RecipientUpdate& u = updates[k];
            if (u.index >= env.recipients.size()) {
                continue;
            }
            const spool::Recipient& r = env.recipients[u.index];
            const auto action =
                dsn_action(u.state, k < handoffs.size() ? handoffs[k] : drain::Handoff::kFinal);
            if (!policy::dsn_wanted(env.mail_from, r.notify, action)) {
                continue;
            }
            policy::DsnRecipient d;
            d.address = r.address;
            d.orcpt = r.orcpt;
            d.action = action;
            d.diagnostic = u.response.empty() ? r.last_response : u.response;
            d.last_attempt_ms = (r.attempts > 0 || u.count_attempt) ? now : 0;
            in.recipients.push_back(std::move(d));
        }
        if (in.recipients.empty()) {
            return std::nullopt;
        }
        if (std::any_of(in.recipients.begin(), in.recipients.end(), [](const auto& r) {
                return r.action == policy::DsnAction::kFailed &&
                       policy::unknown_recipient_reply(r.diagnostic);
            })) {
            unknown.inc();
        }
        const bool full = env.ret == "FULL" && env.size <= kMaxReturnedBytes;
        const std::string original =
            read_original(spool, env, full ? kMaxReturnedBytes : kHeaderOnlyBytes);
        in.original = original;

        spool::NewMessage msg;
        msg.body = policy::build_dsn(in);
        spool::Envelope& dsn = msg.envelope;
        dsn.id = spool.new_id();
        dsn.arrival_ms = now;
        const auto klass = cfg.class_id(cfg.default_class).value_or(0);
        dsn.klass = klass;
        dsn.size = msg.body.size();
        dsn.mail_from.clear(); // the null sender: nobody answers a DSN with a DSN
        dsn.client_addr = "127.0.0.1";
        dsn.helo = cfg.hostname;
        dsn.flags = spool::kFlagDsn;
        for (const char ch : msg.body) {
            if (static_cast<unsigned char>(ch) >= 0x80) {
                dsn.flags |= spool::kFlag8BitMime;
                break;
            }
        }
        dsn.expires_ms = policy::expiry_ms(cfg, klass, now);
        spool::Recipient to;
        to.address = env.mail_from;
        to.notify = spool::kNotifyNever;
        dsn.recipients.push_back(std::move(to));
        log::info("event=dsn id={} original={} to={} recipients={}", dsn.id.text(), env.id.text(),
                  log::quote(env.mail_from), in.recipients.size());
        return msg;
    };
}

} // namespace spoold::daemon
