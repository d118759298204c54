// spoolctl requeue, as Postfix's `postsuper -r`: queued messages go through the current
// configuration again. The class comes from today's rules over the stored envelope and
// headers, the expiry from the arrival and that class's retention (policy/retention), and
// deferred recipients are tried again now, so the drain routes them by today's mailstores.
#include <atomic>
#include <fmt/format.h>

#include "policy/classifier.hpp"
#include "policy/header_scan.hpp"
#include "policy/retention.hpp"
#include "tools/spoolctl/verb_support.hpp"
#include "tools/spoolctl/writes.hpp"

namespace spoold::spoolctl {
namespace {

// The facts the intake classified the message by at the end of DATA, read back: the same
// sender, recipients, client and size, and the same first bytes of the stored message
// (our Received: line first, as the intake saw it).
Result<spool::ClassId> classify_again(Context& ctx, const policy::Classifier& classifier,
                                      const spool::Envelope& env) {
    SPOOLD_TRY(head, ctx.spool->read_body(env.id, 0, policy::kHeaderScanBytes));
    policy::MessageFacts facts;
    facts.sender = env.mail_from;
    facts.recipients.reserve(env.recipients.size());
    for (const auto& r : env.recipients) {
        facts.recipients.emplace_back(r.address);
    }
    facts.client_address = env.client_addr;
    facts.size = env.size;
    facts.header_block = head.data;
    return classifier.classify(facts);
}

// Counted as the writes commit (on the spool's writer thread).
struct Tallies {
    std::atomic<std::uint64_t> moved{0};   // to another class
    std::atomic<std::uint64_t> expired{0}; // past their new expiry: the daemon's expiry acts
};

} // namespace

int verb_requeue(Context& ctx) {
    if (!ctx.config) {
        return usage_error(ctx, "requeue applies the configuration's rules, classes and "
                                "retention: give --config FILE");
    }
    auto classifier = policy::Classifier::compile(*ctx.config);
    if (!classifier) {
        return fail_with(ctx, classifier.error());
    }
    const policy::Config& config = *ctx.config;
    Tallies tallies;
    WriteOp op;
    op.done_word = "requeued";
    op.applies = [](const spool::Envelope&) { return true; };
    op.apply = [&](spool::Spool& s, const spool::Envelope& env, spool::Done done) {
        spool::Reclassification change;
        change.now = ctx.clock->now_ms();
        change.flush = true;
        // Our own DSNs were never classified by the rules (they are not mail from outside):
        // they keep their class, and only their expiry follows today's retention.
        change.klass = env.klass;
        if ((env.flags & spool::kFlagDsn) == 0) {
            auto klass = classify_again(ctx, *classifier, env);
            if (!klass) {
                done(tl::unexpected(klass.error()));
                return;
            }
            change.klass = *klass;
        }
        change.expires_ms = policy::expiry_ms(config, change.klass, env.arrival_ms);
        const bool moved = change.klass != env.klass;
        const bool expired = policy::is_expired(change.expires_ms, change.now);
        s.reclassify(env.id, change, [&tallies, moved, expired, done = std::move(done)](Status st) {
            if (st) {
                tallies.moved += moved ? 1 : 0;
                tallies.expired += expired ? 1 : 0;
            }
            done(std::move(st));
        });
    };
    op.detail = [&] {
        return fmt::format(" ({} to another class, {} past their new expiry)", tallies.moved.load(),
                           tallies.expired.load());
    };
    return run_writes(ctx, ctx.cl.operands, op);
}

} // namespace spoold::spoolctl
