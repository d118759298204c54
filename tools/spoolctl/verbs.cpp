#include "tools/spoolctl/verbs.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <functional>
#include <limits>

#include "common/json.hpp"
#include "tools/spoolctl/mbox.hpp"
#include "tools/spoolctl/units.hpp"
#include "tools/spoolctl/verb_support.hpp"

namespace spoold::spoolctl {
namespace {

constexpr std::size_t kHeaderReadLimit = 1U << 20U;
constexpr std::size_t kListBufferBytes = 64U << 10U;

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
    json::Writer w;
    w.begin_object();
    w.key("records").value(static_cast<std::uint64_t>(r.records));
    w.key("index_entries").value(static_cast<std::uint64_t>(r.index_entries));
    w.key("problems").begin_array();
    for (const auto& p : r.problems) {
        w.value(p);
    }
    w.end_array();
    w.key("more_problems").value(static_cast<std::uint64_t>(r.more_problems));
    w.key("counters_compared").value(r.counters_compared);
    w.key("removed_pending").value(static_cast<std::uint64_t>(r.removed_pending));
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
    if (!r.counters_compared) {
        print(ctx.out, "note: counters not compared: the spool changed during the check (spoold "
                       "at work); they are compared when it does not\n");
    }
    if (r.removed_pending > 0) {
        say(ctx.out,
            "info: {} removed messages' recipient-index entries wait for spoold's sweep "
            "(counted as expected; --repair deletes them now)\n",
            r.removed_pending);
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
    if (auto pending = ctx.spool->removed_recipients_pending()) {
        r.removed_pending = *pending;
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
        print(ctx.out, json_message(**env, state, ctx.clock->now_ms(), ctx.classes, headers));
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

int verb_pause(Context& ctx) { return set_paused(ctx, true); }

int verb_resume(Context& ctx) { return set_paused(ctx, false); }

// The spool checks itself in short read transactions (each record and index entry against the
// other in one snapshot, even while spoold writes) and repairs on its writer: spoolctl only
// asks and reports.
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
