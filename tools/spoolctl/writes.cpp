#include "tools/spoolctl/writes.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <unistd.h>

#include "common/json.hpp"
#include "policy/retention.hpp"
#include "spool/record.hpp"
#include "tools/spoolctl/units.hpp"
#include "tools/spoolctl/verb_support.hpp"

namespace spoold::spoolctl {
namespace {

bool confirm(Context& ctx, std::string_view question) {
    if (ctx.cl.yes) {
        return true;
    }
    if (isatty(STDIN_FILENO) == 0) {
        say(ctx.err, "spoolctl: {}: refusing without --yes: {} (stdin is not a terminal)\n",
            ctx.cl.verb, question);
        return false;
    }
    say(ctx.err, "{} [y/N] ", question);
    std::fflush(ctx.err);
    char answer[16] = {}; // NOLINT: a short reply line
    if (std::fgets(answer, sizeof answer, stdin) == nullptr) {
        return false;
    }
    return answer[0] == 'y' || answer[0] == 'Y';
}

int report_writes(Context& ctx, const Pipeline& p, const WriteOp& op, int exit_code) {
    if (!ctx.cl.json) {
        say(ctx.out, "{} {} message{}", op.done_word, p.ok(), p.ok() == 1 ? "" : "s");
        if (op.detail) {
            print(ctx.out, op.detail());
        }
        if (p.gone() > 0) {
            say(ctx.out, ", {} already gone", p.gone());
        }
        if (p.failed() > 0) {
            say(ctx.out, ", {} failed", p.failed());
        }
        print(ctx.out, "\n");
    } else {
        json::Writer w;
        w.begin_object();
        w.key("verb").value(ctx.cl.verb);
        w.key("done").value(p.ok());
        w.key("gone").value(p.gone());
        w.key("failed").value(p.failed());
        w.end_object();
        print(ctx.out, w.str() + "\n");
    }
    return p.failed() > 0 ? kExitFailed : exit_code;
}

// What a filter selects, counted before the question.
struct Tally {
    std::uint64_t matched = 0;
    std::uint64_t changing = 0; // op.applies
    std::uint64_t bytes = 0;    // of those
    QueueId last{0};            // the highest id among them: the question's horizon
};

} // namespace

int run_writes(Context& ctx, const std::vector<std::string>& operands, const WriteOp& op) {
    auto sel = select_targets(ctx, operands, op.default_all);
    if (!sel) {
        return usage_error(ctx, sel.error().message);
    }
    int exit_code = kExitOk;
    Pipeline pipeline(ctx.err, ctx.cl.verb);
    Tally tally;
    if (sel->by_filter) {
        // Count without keeping ids (memory stays flat on any spool), ask, then walk again.
        const Status counted = for_each_target(
            ctx, *sel,
            [&](const spool::Envelope& env, spool::MsgState) {
                ++tally.matched;
                if (op.applies(env)) {
                    ++tally.changing;
                    tally.bytes += env.size;
                    tally.last = std::max(tally.last, env.id);
                }
                return true;
            },
            exit_code);
        if (!counted) {
            return fail_with(ctx, counted.error());
        }
        if (tally.matched == 0 && !ctx.cl.json) {
            say(ctx.out, "no message matches\n");
            return kExitOk;
        }
        if (tally.changing == 0) {
            return report_writes(ctx, pipeline, op, exit_code);
        }
        if (!confirm(ctx, fmt::format("{} {} message{} ({}){}?", ctx.cl.verb, tally.changing,
                                      tally.changing == 1 ? "" : "s", format_size(tally.bytes),
                                      op.question_tail))) {
            say(ctx.err, "spoolctl: {}: nothing changed\n", ctx.cl.verb);
            return kExitFailed;
        }
    }
    // Pages are keyed by id, so changing a message's state or class does not disturb the
    // walk; ids above the counted ones arrived after the question.
    const Status st = for_each_target(
        ctx, *sel,
        [&](const spool::Envelope& env, spool::MsgState) {
            if (!sel->by_filter || (env.id <= tally.last && op.applies(env))) {
                spool::Spool* s = ctx.spool;
                pipeline.submit(env.id,
                                [s, &env, &op](spool::Done d) { op.apply(*s, env, std::move(d)); });
            }
            return true;
        },
        exit_code);
    pipeline.finish();
    if (!st) {
        return fail_with(ctx, st.error());
    }
    return report_writes(ctx, pipeline, op, exit_code);
}

namespace {

bool applies_always(const spool::Envelope&) { return true; }

int set_held(Context& ctx, bool held) {
    WriteOp op;
    op.done_word = held ? "held" : "released";
    op.applies = [held](const spool::Envelope& env) { return env.held != held; };
    op.apply = [held](spool::Spool& s, const spool::Envelope& env, spool::Done d) {
        s.set_held(env.id, held, std::move(d));
    };
    return run_writes(ctx, ctx.cl.operands, op);
}

} // namespace

int verb_hold(Context& ctx) { return set_held(ctx, true); }

int verb_release(Context& ctx) { return set_held(ctx, false); }

int verb_delete(Context& ctx) {
    WriteOp op;
    op.done_word = "deleted";
    op.applies = applies_always;
    op.apply = [](spool::Spool& s, const spool::Envelope& env, spool::Done d) {
        s.remove(env.id, std::move(d));
    };
    return run_writes(ctx, ctx.cl.operands, op);
}

Status kick_scheduler(spool::Spool& s) {
    // A spoold write racing this one may leave the same value; its move is after our read,
    // so the scheduler starts over after the kick began either way.
    auto epoch = s.get_meta(spool::kReadyEpochKey);
    if (!epoch) {
        return tl::unexpected(epoch.error());
    }
    const std::uint64_t n = *epoch && (*epoch)->size() == 8 ? spool::record::read_be64(**epoch) : 0;
    return s.wait([&](spool::Done d) {
        s.put_meta(std::string(spool::kReadyEpochKey), spool::record::be64(n + 1), std::move(d));
    });
}

int verb_flush(Context& ctx) {
    WriteOp op;
    op.done_word = "flushed";
    op.applies = [](const spool::Envelope& env) {
        return std::any_of(
            env.recipients.begin(), env.recipients.end(),
            [](const spool::Recipient& r) { return r.state == spool::RcptState::kDeferred; });
    };
    op.apply = [](spool::Spool& s, const spool::Envelope& env, spool::Done d) {
        s.flush(env.id, std::move(d));
    };
    op.default_all = true;
    const int exit_code = run_writes(ctx, ctx.cl.operands, op);
    if (exit_code != kExitOk) {
        return exit_code; // refused at the question, or a write failed
    }
    if (const Status kicked = kick_scheduler(*ctx.spool); !kicked) {
        return fail_with(ctx, kicked.error());
    }
    return exit_code;
}

int verb_set_class(Context& ctx) {
    std::vector<std::string> operands = ctx.cl.operands;
    if (operands.empty()) {
        return usage_error(
            ctx, "set-class needs the class: set-class ID... CLASS, or set-class FILTER CLASS");
    }
    const auto new_class = ctx.classes.find(operands.back());
    if (!new_class) {
        return usage_error(ctx, fmt::format("unknown class '{}'", operands.back()));
    }
    operands.pop_back();
    const spool::ClassId k = *new_class;
    WriteOp op;
    op.done_word = "moved";
    op.question_tail = " to " + ctx.classes.name(k);
    op.applies = [k](const spool::Envelope& env) { return env.klass != k; };
    // The expiry follows the new class's retention, from arrival (policy/retention).
    // Without a config the stored one stays, and spoold computes it again when it comes.
    const policy::Config* config = ctx.config.get();
    const UnixMillis now = ctx.clock->now_ms();
    op.apply = [k, config, now](spool::Spool& s, const spool::Envelope& env, spool::Done d) {
        if (config == nullptr) {
            s.set_class(env.id, k, std::move(d));
            return;
        }
        const spool::Reclassification change{k, policy::expiry_ms(*config, k, env.arrival_ms), now,
                                             false};
        s.reclassify(env.id, change, std::move(d));
    };
    return run_writes(ctx, operands, op);
}

} // namespace spoold::spoolctl
