#include "tools/spoolctl/verbs.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <functional>
#include <limits>
#include <unistd.h>

#include "tools/spoolctl/json.hpp"
#include "tools/spoolctl/mbox.hpp"
#include "tools/spoolctl/units.hpp"
#include "tools/spoolctl/verb_support.hpp"

namespace spoold::spoolctl {
namespace {

constexpr std::size_t kHeaderReadLimit = 1U << 20U;
constexpr std::size_t kListBufferBytes = 64U << 10U;

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

int report_writes(Context& ctx, const Pipeline& p, std::string_view done_word, int exit_code) {
    if (!ctx.cl.json) {
        say(ctx.out, "{} {} message{}", done_word, p.ok(), p.ok() == 1 ? "" : "s");
        if (p.gone() > 0) {
            say(ctx.out, ", {} already gone", p.gone());
        }
        if (p.failed() > 0) {
            say(ctx.out, ", {} failed", p.failed());
        }
        print(ctx.out, "\n");
    } else {
        say(ctx.out, "{{\"verb\":\"{}\",\"done\":{},\"gone\":{},\"failed\":{}}}\n", ctx.cl.verb,
            p.ok(), p.gone(), p.failed());
    }
    return p.failed() > 0 ? kExitFailed : exit_code;
}

// What one of hold, release, delete, flush and set-class does to each selected message.
struct WriteOp {
    std::string_view done_word; // "held 3 messages"
    // Whether the operation would change the message at all: skipping the rest keeps a
    // "hold everything from this sender" from rewriting messages already held.
    std::function<bool(const spool::Envelope&)> applies;
    std::function<void(spool::Spool&, QueueId, spool::Done)> apply;
    bool default_all = false;    // no ids and no filter mean every message (flush)
    bool confirm_filter = false; // a filter or --all asks first (delete)
};

// The write verbs share the selection, the confirmation and the pipeline.
int run_writes(Context& ctx, const std::vector<std::string>& operands, const WriteOp& op) {
    auto sel = select_targets(ctx, operands, op.default_all);
    if (!sel) {
        return usage_error(ctx, sel.error().message);
    }
    auto submit = [&](Pipeline& p, QueueId id) {
        spool::Spool* s = ctx.spool;
        p.submit(id, [s, id, &op](spool::Done d) { op.apply(*s, id, std::move(d)); });
    };
    int exit_code = kExitOk;
    Pipeline pipeline(ctx.err, ctx.cl.verb);
    const bool needs_confirmation = op.confirm_filter && sel->by_filter;
    if (!needs_confirmation) {
        // Ids found by a scan are written as the scan goes: pages are keyed by id, so
        // changing a message's state or class does not disturb the walk.
        const Status st = for_each_target(
            ctx, *sel,
            [&](const spool::Envelope& env, spool::MsgState) {
                if (op.applies(env) || !sel->by_filter) {
                    submit(pipeline, env.id);
                }
                return true;
            },
            exit_code);
        pipeline.finish();
        if (!st) {
            return fail_with(ctx, st.error());
        }
        return report_writes(ctx, pipeline, op.done_word, exit_code);
    }
    // delete by filter: find everything first, so the question states what will go.
    std::vector<QueueId> ids;
    std::uint64_t bytes = 0;
    const Status st = for_each_target(
        ctx, *sel,
        [&](const spool::Envelope& env, spool::MsgState) {
            ids.push_back(env.id);
            bytes += env.size;
            return true;
        },
        exit_code);
    if (!st) {
        return fail_with(ctx, st.error());
    }
    if (ids.empty()) {
        say(ctx.out, "no message matches\n");
        return kExitOk;
    }
    if (!confirm(ctx, fmt::format("delete {} message{} ({})?", ids.size(),
                                  ids.size() == 1 ? "" : "s", format_size(bytes)))) {
        say(ctx.err, "spoolctl: delete: nothing deleted\n");
        return kExitFailed;
    }
    for (const auto id : ids) {
        submit(pipeline, id);
    }
    pipeline.finish();
    return report_writes(ctx, pipeline, op.done_word, exit_code);
}

bool applies_always(const spool::Envelope&) { return true; }

int set_paused(Context& ctx, bool pause) {
    if (!ctx.cl.operands.empty()) {
        return usage_error(ctx, "takes no operands (use --mailstore NAME for one mailstore)");
    }
    std::string key = "paused";
    if (!ctx.cl.mailstore.empty()) {
        if (ctx.config && std::none_of(ctx.config->mailstores.begin(), ctx.config->mailstores.end(),
                                       [&](const policy::MailstoreConfig& m) {
                                           return m.name == ctx.cl.mailstore;
                                       })) {
            return usage_error(ctx, fmt::format("no mailstore '{}' in {}", ctx.cl.mailstore,
                                                ctx.config->source_file));
        }
        key += "." + ctx.cl.mailstore;
    }
    spool::Spool* s = ctx.spool;
    const std::string value = pause ? "1" : "0";
    const Status st = s->wait([&](spool::Done d) { s->put_meta(key, value, std::move(d)); });
    if (!st) {
        return fail_with(ctx, st.error());
    }
    say(ctx.out, "drain {}{}\n", pause ? "paused" : "resumed",
        ctx.cl.mailstore.empty() ? std::string() : " for mailstore " + ctx.cl.mailstore);
    return kExitOk;
}

std::string check_json(const spool::CheckReport& r) {
    JsonWriter w;
    w.begin_object();
    w.key("records").value(static_cast<std::uint64_t>(r.records));
    w.key("index_entries").value(static_cast<std::uint64_t>(r.index_entries));
    w.key("problems").begin_array();
    for (const auto& p : r.problems) {
        w.value(p);
    }
    w.end_array();
    w.key("more_problems").value(static_cast<std::uint64_t>(r.more_problems));
    w.key("repaired").value(r.repaired);
    w.end_object();
    return w.str() + "\n";
}

void print_check(Context& ctx, const spool::CheckReport& r, bool bodies) {
    for (const auto& p : r.problems) {
        say(ctx.out, "problem: {}\n", printable(p));
    }
    if (r.more_problems > 0) {
        say(ctx.out, "problem: ... and {} more\n", r.more_problems);
    }
    const std::uint64_t n = r.problems.size() + r.more_problems;
    say(ctx.out, "check: {} messages, {} index entries{}: {}\n", r.records, r.index_entries,
        bodies ? ", bodies read" : "",
        n == 0 ? std::string("ok") : fmt::format("{} problem{}", n, n == 1 ? "" : "s"));
}

} // namespace

int verb_status(Context& ctx) {
    StatusReport r;
    r.now_ms = ctx.clock->now_ms();
    auto counters = ctx.spool->counters();
    if (!counters) {
        return fail_with(ctx, counters.error());
    }
    r.counters = *counters;
    auto oldest = ctx.spool->oldest();
    if (!oldest) {
        return fail_with(ctx, oldest.error());
    }
    if (*oldest) {
        r.oldest = **oldest;
        auto env = ctx.spool->get(**oldest);
        // Gone between the two reads (delivered just now): fall back to the time in its id.
        r.oldest_arrival_ms = env && *env ? (*env)->arrival_ms : (*oldest)->millis();
    }
    if (auto space = ctx.spool->space()) {
        r.space = *space;
    }
    r.paused = meta_or(ctx, "paused", "0") == "1";
    std::vector<std::string> names;
    if (ctx.config) {
        for (const auto& m : ctx.config->mailstores) {
            names.push_back(m.name);
        }
    } else {
        // The same comma list as the class names; parsed by ClassNames for that reason only.
        const ClassNames published = ClassNames::from_csv(meta_or(ctx, "mailstores", ""));
        for (const auto& n : published.names()) {
            if (!n.empty()) {
                names.push_back(n);
            }
        }
    }
    for (const auto& n : names) {
        MailstoreStatus ms;
        ms.name = n;
        if (auto v = ctx.spool->get_meta(fmt::format("mailstore.{}.breaker", n)); v && *v) {
            parse_breaker_meta(**v, ms);
        }
        if (auto v = ctx.spool->get_meta(fmt::format("mailstore.{}.rate", n)); v && *v) {
            ms.rate = **v;
        }
        ms.paused = meta_or(ctx, fmt::format("paused.{}", n), "0") == "1";
        r.mailstores.push_back(std::move(ms));
    }
    print(ctx.out, ctx.cl.json ? status_json(r, ctx.classes) : status_text(r, ctx.classes));
    return kExitOk;
}

int verb_list(Context& ctx) {
    if (!ctx.cl.operands.empty()) {
        return usage_error(ctx, "list takes no operands (use the filter options)");
    }
    auto filter = resolved_filter(ctx);
    if (!filter) {
        return usage_error(ctx, filter.error().message);
    }
    const std::size_t limit = ctx.cl.limit.value_or(std::numeric_limits<std::size_t>::max());
    if (!ctx.cl.json && !ctx.cl.no_header) {
        print(ctx.out, table_header());
    }
    std::uint64_t shown = 0;
    std::uint64_t bytes = 0;
    std::string buffer;
    // Rows go out as they are found (the first ones one by one, then at least once a
    // page), so a person watching a sparse filter on millions of messages sees progress.
    const auto flush_rows = [&] {
        if (!buffer.empty()) {
            print(ctx.out, buffer);
            std::fflush(ctx.out);
            buffer.clear();
        }
    };
    const Status st = scan(
        ctx, *filter,
        [&](const spool::Envelope& env, spool::MsgState state) {
            if (shown >= limit) {
                return false;
            }
            const UnixMillis now = ctx.clock->now_ms();
            buffer += ctx.cl.json ? json_message(env, state, now, ctx.classes)
                                  : table_row(env, state, now, ctx.classes);
            ++shown;
            bytes += env.size;
            if (shown <= kFirstPage || buffer.size() > kListBufferBytes) {
                flush_rows();
            }
            return shown < limit;
        },
        flush_rows);
    print(ctx.out, buffer);
    if (!st) {
        std::fflush(ctx.out);
        return fail_with(ctx, st.error());
    }
    if (!ctx.cl.json && !ctx.cl.no_header) {
        say(ctx.out, "-- {} message{}, {}\n", shown, shown == 1 ? "" : "s", format_size(bytes));
    }
    std::fflush(ctx.out);
    return kExitOk;
}

int verb_show(Context& ctx) {
    if (ctx.cl.operands.size() != 1) {
        return usage_error(ctx, "show takes exactly one queue id");
    }
    const auto id = QueueId::parse(ctx.cl.operands[0]);
    if (!id) {
        return usage_error(ctx, fmt::format("'{}' is not a queue id", ctx.cl.operands[0]));
    }
    auto env = ctx.spool->get(*id);
    if (!env) {
        return fail_with(ctx, env.error());
    }
    if (!*env) {
        say(ctx.err, "spoolctl: show: {}: no such message\n", id->text());
        return kExitFailed;
    }
    const auto state = spool::message_state(**env);
    if (ctx.cl.body) {
        // The message exactly as stored, for piping into a mail reader or a file.
        std::uint32_t chunk = 0;
        for (;;) {
            auto piece = ctx.spool->read_body(*id, chunk, kBodyReadBytes);
            if (!piece) {
                return fail_with(ctx, piece.error());
            }
            print(ctx.out, piece->data);
            if (piece->done) {
                break;
            }
            chunk = piece->next_chunk;
        }
        std::fflush(ctx.out);
        return kExitOk;
    }
    std::string message;
    if (auto st = read_message_into(ctx, *id, message, kHeaderReadLimit, true); !st) {
        return fail_with(ctx, st.error());
    }
    const auto headers = header_section(message);
    if (ctx.cl.json) {
        std::string line = json_message(**env, state, ctx.clock->now_ms(), ctx.classes);
        line.pop_back(); // "}\n" -> add the headers as one more member
        line.pop_back();
        line += ",\"headers\":" + json_string(headers) + "}\n";
        print(ctx.out, line);
        return kExitOk;
    }
    print(ctx.out, show_text(**env, state, ctx.clock->now_ms(), ctx.classes));
    print(ctx.out, "\n");
    std::string text(headers);
    text.erase(std::remove(text.begin(), text.end(), '\r'), text.end());
    // Headers come from the network: defuse terminal escapes but keep the line structure.
    std::string shown;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const auto eol = text.find('\n', pos);
        const auto line =
            text.substr(pos, eol == std::string::npos ? std::string::npos : eol - pos);
        // Tabs are kept: they are how folded header lines continue.
        std::string safe = printable(line);
        for (std::size_t i = 0; i < line.size(); ++i) {
            if (line[i] == '\t') {
                safe[i] = '\t';
            }
        }
        shown += safe + "\n";
        pos = eol == std::string::npos ? text.size() : eol + 1;
    }
    print(ctx.out, shown);
    return kExitOk;
}

int verb_hold(Context& ctx) {
    return run_writes(
        ctx, ctx.cl.operands,
        {"held", [](const spool::Envelope& env) { return !env.held; },
         [](spool::Spool& s, QueueId id, spool::Done d) { s.set_held(id, true, std::move(d)); }});
}

int verb_release(Context& ctx) {
    return run_writes(
        ctx, ctx.cl.operands,
        {"released", [](const spool::Envelope& env) { return env.held; },
         [](spool::Spool& s, QueueId id, spool::Done d) { s.set_held(id, false, std::move(d)); }});
}

int verb_delete(Context& ctx) {
    return run_writes(
        ctx, ctx.cl.operands,
        {"deleted", applies_always,
         [](spool::Spool& s, QueueId id, spool::Done d) { s.remove(id, std::move(d)); }, false,
         true});
}

int verb_flush(Context& ctx) {
    return run_writes(
        ctx, ctx.cl.operands,
        {"flushed",
         [](const spool::Envelope& env) {
             return std::any_of(
                 env.recipients.begin(), env.recipients.end(),
                 [](const spool::Recipient& r) { return r.state == spool::RcptState::kDeferred; });
         },
         [](spool::Spool& s, QueueId id, spool::Done d) { s.flush(id, std::move(d)); }, true,
         false});
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
    return run_writes(
        ctx, operands,
        {"moved", [k](const spool::Envelope& env) { return env.klass != k; },
         [k](spool::Spool& s, QueueId id, spool::Done d) { s.set_class(id, k, std::move(d)); }});
}

int verb_pause(Context& ctx) { return set_paused(ctx, true); }

int verb_resume(Context& ctx) { return set_paused(ctx, false); }

// The spool checks itself in one read transaction (a consistent snapshot even while
// spoold writes) and repairs on its writer: spoolctl only asks and reports.
int verb_check(Context& ctx) {
    if (!ctx.cl.operands.empty()) {
        return usage_error(ctx, "check takes no operands");
    }
    auto report = ctx.spool->check(ctx.cl.bodies, ctx.cl.repair);
    if (!report) {
        return fail_with(ctx, report.error());
    }
    const bool found = !report->problems.empty() || report->more_problems > 0;
    if (!report->repaired) {
        print(ctx.out, ctx.cl.json ? check_json(*report) : std::string());
        if (!ctx.cl.json) {
            print_check(ctx, *report, ctx.cl.bodies);
        }
        return found ? kExitFailed : kExitOk;
    }
    // After a repair, what counts is whether the spool is now clean: check again.
    auto after = ctx.spool->check(false, false);
    if (!after) {
        return fail_with(ctx, after.error());
    }
    const bool still = !after->problems.empty() || after->more_problems > 0;
    if (ctx.cl.json) {
        print(ctx.out, check_json(*report));
        print(ctx.out, check_json(*after));
    } else {
        print_check(ctx, *report, ctx.cl.bodies);
        say(ctx.out, "repaired: indexes and counters rebuilt from the records\n");
        print_check(ctx, *after, false);
    }
    return still ? kExitFailed : kExitOk;
}

} // namespace spoold::spoolctl
