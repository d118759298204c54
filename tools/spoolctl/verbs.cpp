#include "tools/spoolctl/verbs.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <fmt/format.h>
#include <functional>
#include <limits>
#include <mutex>
#include <sys/stat.h>
#include <unistd.h>

#include "tools/spoolctl/json.hpp"
#include "tools/spoolctl/mbox.hpp"
#include "tools/spoolctl/units.hpp"

namespace spoold::spoolctl {
namespace {

// Listing pages start small so the first rows print at once on any spool, then grow so a
// full scan costs few transactions.
constexpr std::size_t kFirstPage = 64;
constexpr std::size_t kMaxPage = 4096;
// Writes in flight at once: enough for the group-commit writer to batch many per commit,
// few enough that a filter over millions never queues millions of closures.
constexpr std::size_t kMaxInFlight = 2048;
constexpr std::size_t kBodyReadBytes = 1U << 20U;
constexpr std::size_t kHeaderReadLimit = 1U << 20U;
constexpr std::size_t kIndexPage = 4096;
constexpr std::size_t kListBufferBytes = 64U << 10U;

using MatchFn = std::function<bool(const spool::Envelope&, spool::MsgState)>;

void print(std::FILE* f, std::string_view text) { std::fwrite(text.data(), 1, text.size(), f); }

template <typename... Args>
void say(std::FILE* f, fmt::format_string<Args...> format, Args&&... args) {
    print(f, fmt::format(format, std::forward<Args>(args)...));
}

bool pending(const spool::Recipient& r) {
    return r.state == spool::RcptState::kQueued || r.state == spool::RcptState::kDeferred;
}

// Submits asynchronous spool writes with a bound on how many are in flight, and counts
// the outcomes. Completions arrive on the spool's writer thread.
class Pipeline {
public:
    Pipeline(std::FILE* err, std::string verb) : err_(err), verb_(std::move(verb)) {}
    Pipeline(const Pipeline&) = delete;
    Pipeline& operator=(const Pipeline&) = delete;
    ~Pipeline() { finish(); }

    void submit(QueueId id, const std::function<void(spool::Done)>& op) {
        {
            std::unique_lock lock(mutex_);
            cv_.wait(lock, [&] { return in_flight_ < kMaxInFlight; });
            ++in_flight_;
        }
        op([this, id](Status st) {
            const std::lock_guard lock(mutex_);
            if (st) {
                ++ok_;
            } else if (st.error().kind == ErrorKind::kNotFound) {
                // Delivered or removed by spoold meanwhile: nothing left to act on.
                ++gone_;
                say(err_, "spoolctl: {} {}: no longer in the spool\n", verb_, id.text());
            } else {
                ++failed_;
                say(err_, "spoolctl: {} {}: {}\n", verb_, id.text(), st.error().describe());
            }
            --in_flight_;
            cv_.notify_all();
        });
    }

    void finish() {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [&] { return in_flight_ == 0; });
    }

    std::uint64_t ok() const { return ok_; }
    std::uint64_t failed() const { return failed_; }
    std::uint64_t gone() const { return gone_; }

private:
    std::FILE* err_;
    std::string verb_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::size_t in_flight_ = 0;
    std::uint64_t ok_ = 0;
    std::uint64_t failed_ = 0;
    std::uint64_t gone_ = 0;
};

int fail_with(Context& ctx, const Error& e) {
    say(ctx.err, "spoolctl: {}: {}\n", ctx.cl.verb, e.describe());
    return kExitFailed;
}

int usage_error(Context& ctx, std::string_view message) {
    say(ctx.err, "spoolctl: {}: {}\n", ctx.cl.verb, message);
    return kExitUsage;
}

// The filter with --class resolved against the class names.
Result<Filter> resolved_filter(const Context& ctx) {
    Filter f = ctx.cl.filter;
    if (ctx.cl.class_filter) {
        const auto id = ctx.classes.find(*ctx.cl.class_filter);
        if (!id) {
            return fail(ErrorKind::kInvalid,
                        fmt::format("unknown class '{}'", *ctx.cl.class_filter));
        }
        f.klass = *id;
    }
    return f;
}

// Calls fn for each message matching `filter` in id order until fn returns false, and
// on_page (when given) after each page. Memory holds one page, whatever the spool size.
Status scan(Context& ctx, const Filter& filter, const MatchFn& fn,
            const std::function<void()>& on_page = {}) {
    QueueId after{0};
    std::size_t page = kFirstPage;
    for (;;) {
        auto batch = ctx.spool->envelopes_after(after, page);
        if (!batch) {
            return tl::unexpected(batch.error());
        }
        if (batch->empty()) {
            return {};
        }
        const UnixMillis now = ctx.clock->now_ms();
        for (const auto& env : *batch) {
            const auto state = spool::message_state(env);
            if (filter.matches(env, state, now) && !fn(env, state)) {
                return {};
            }
        }
        if (on_page) {
            on_page();
        }
        after = batch->back().id;
        page = std::min(page * 4, kMaxPage);
    }
}

Result<std::vector<QueueId>> parse_ids(const std::vector<std::string>& texts) {
    std::vector<QueueId> ids;
    for (const auto& t : texts) {
        const auto id = QueueId::parse(t);
        if (!id) {
            return fail(ErrorKind::kInvalid, fmt::format("'{}' is not a queue id", t));
        }
        ids.push_back(*id);
    }
    return ids;
}

// The messages a verb acts on: the given ids, else the filter, else (with --all) every
// message. `missing` counts ids that are not in the spool.
struct Selection {
    std::vector<QueueId> ids;
    bool by_filter = false;
};

Result<Selection> select_targets(Context& ctx, const std::vector<std::string>& operands,
                                 bool default_all) {
    Selection sel;
    auto ids = parse_ids(operands);
    if (!ids) {
        return tl::unexpected(ids.error());
    }
    auto filter = resolved_filter(ctx);
    if (!filter) {
        return tl::unexpected(filter.error());
    }
    if (!ids->empty()) {
        if (!filter->empty() || ctx.cl.all) {
            return fail(ErrorKind::kInvalid, "give queue ids or a filter, not both");
        }
        sel.ids = std::move(*ids);
        return sel;
    }
    if (filter->empty() && !ctx.cl.all && !default_all) {
        return fail(ErrorKind::kInvalid, "give queue ids, a filter, or --all for every message");
    }
    sel.by_filter = true;
    return sel;
}

// Calls fn for each selected message that exists (ids) or matches (filter).
Status for_each_target(Context& ctx, const Selection& sel, const MatchFn& fn, int& exit_code) {
    if (!sel.by_filter) {
        for (const auto id : sel.ids) {
            auto env = ctx.spool->get(id);
            if (!env) {
                return tl::unexpected(env.error());
            }
            if (!*env) {
                say(ctx.err, "spoolctl: {}: {}: no such message\n", ctx.cl.verb, id.text());
                exit_code = kExitFailed;
                continue;
            }
            if (!fn(**env, spool::message_state(**env))) {
                break;
            }
        }
        return {};
    }
    auto filter = resolved_filter(ctx);
    if (!filter) {
        return tl::unexpected(filter.error());
    }
    return scan(ctx, *filter, fn);
}

// Reads a whole message into `out` (replacing its contents). Callers that read many
// messages pass the same string: reusing its capacity keeps malloc from growing and
// trimming the heap for every message, which dominated export time on big messages.
Status read_message_into(Context& ctx, QueueId id, std::string& out,
                         std::size_t limit = std::numeric_limits<std::size_t>::max(),
                         bool headers_only = false) {
    out.clear();
    std::uint32_t chunk = 0;
    for (;;) {
        auto piece = ctx.spool->read_body(id, chunk, kBodyReadBytes);
        if (!piece) {
            return tl::unexpected(piece.error());
        }
        out += piece->data;
        if (piece->done || out.size() >= limit) {
            return {};
        }
        if (headers_only &&
            (out.find("\r\n\r\n") != std::string::npos || out.find("\n\n") != std::string::npos)) {
            return {};
        }
        chunk = piece->next_chunk;
    }
}

std::string meta_or(Context& ctx, std::string_view key, std::string fallback) {
    auto v = ctx.spool->get_meta(key);
    return v && *v ? **v : fallback;
}

// ---- status ----

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
            ms.breaker = **v;
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

// ---- list ----

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

// ---- show ----

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

// ---- writes by id or filter ----

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

// hold, release, delete, flush and set-class share the selection, confirmation and pipeline.
int verb_write(Context& ctx) {
    const std::string& verb = ctx.cl.verb;
    std::vector<std::string> operands = ctx.cl.operands;
    std::optional<spool::ClassId> new_class;
    if (verb == "set-class") {
        if (operands.empty()) {
            return usage_error(
                ctx, "set-class needs the class: set-class ID... CLASS, or set-class FILTER CLASS");
        }
        new_class = ctx.classes.find(operands.back());
        if (!new_class) {
            return usage_error(ctx, fmt::format("unknown class '{}'", operands.back()));
        }
        operands.pop_back();
    }
    const bool is_flush = verb == "flush";
    auto sel = select_targets(ctx, operands, is_flush);
    if (!sel) {
        return usage_error(ctx, sel.error().message);
    }
    // Which selected messages the operation would change at all: skipping the rest keeps a
    // "hold everything from this sender" from rewriting messages already held.
    auto applies = [&](const spool::Envelope& env) {
        if (verb == "hold") {
            return !env.held;
        }
        if (verb == "release") {
            return env.held;
        }
        if (is_flush) {
            return std::any_of(
                env.recipients.begin(), env.recipients.end(),
                [](const spool::Recipient& r) { return r.state == spool::RcptState::kDeferred; });
        }
        if (new_class) {
            return env.klass != *new_class;
        }
        return true;
    };
    auto submit = [&](Pipeline& p, QueueId id) {
        spool::Spool* s = ctx.spool;
        if (verb == "hold" || verb == "release") {
            const bool held = verb == "hold";
            p.submit(id, [s, id, held](spool::Done d) { s->set_held(id, held, std::move(d)); });
        } else if (verb == "delete") {
            p.submit(id, [s, id](spool::Done d) { s->remove(id, std::move(d)); });
        } else if (is_flush) {
            p.submit(id, [s, id](spool::Done d) { s->flush(id, std::move(d)); });
        } else {
            const auto k = *new_class;
            p.submit(id, [s, id, k](spool::Done d) { s->set_class(id, k, std::move(d)); });
        }
    };
    int exit_code = kExitOk;
    Pipeline pipeline(ctx.err, verb);
    const bool needs_confirmation = verb == "delete" && sel->by_filter;
    if (!needs_confirmation) {
        // Ids found by a scan are written as the scan goes: pages are keyed by id, so
        // changing a message's state or class does not disturb the walk.
        const Status st = for_each_target(
            ctx, *sel,
            [&](const spool::Envelope& env, spool::MsgState) {
                if (applies(env) || !sel->by_filter) {
                    submit(pipeline, env.id);
                }
                return true;
            },
            exit_code);
        pipeline.finish();
        if (!st) {
            return fail_with(ctx, st.error());
        }
        const char* word = verb == "hold"      ? "held"
                           : verb == "release" ? "released"
                           : verb == "delete"  ? "deleted"
                           : is_flush          ? "flushed"
                                               : "moved";
        return report_writes(ctx, pipeline, word, exit_code);
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
    return report_writes(ctx, pipeline, "deleted", exit_code);
}

// ---- pause / resume ----

int verb_pause(Context& ctx) {
    if (!ctx.cl.operands.empty()) {
        return usage_error(ctx, "takes no operands (use --mailstore NAME for one mailstore)");
    }
    const bool pause = ctx.cl.verb == "pause";
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

// ---- export ----

Status write_file_atomically(const std::string& dir, const std::string& name, std::string_view a,
                             std::string_view b) {
    const std::string tmp = dir + "/." + name + ".tmp";
    const std::string final_path = dir + "/" + name;
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (f == nullptr) {
        return fail(ErrorKind::kIo, fmt::format("{}: {}", tmp, std::strerror(errno)));
    }
    const bool ok = std::fwrite(a.data(), 1, a.size(), f) == a.size() &&
                    std::fwrite(b.data(), 1, b.size(), f) == b.size();
    const bool closed = std::fclose(f) == 0;
    // Written under a temporary name and renamed: a reader never sees half a message.
    if (!ok || !closed || std::rename(tmp.c_str(), final_path.c_str()) != 0) {
        const int e = errno;
        std::remove(tmp.c_str());
        return fail(e == ENOSPC ? ErrorKind::kDiskFull : ErrorKind::kIo,
                    fmt::format("{}: {}", final_path, std::strerror(e)));
    }
    return {};
}

int verb_export(Context& ctx) {
    if (ctx.cl.dir.empty() == ctx.cl.mbox.empty()) {
        return usage_error(ctx, "give exactly one of --dir DIR or --mbox FILE");
    }
    auto sel = select_targets(ctx, ctx.cl.operands, false);
    if (!sel) {
        return usage_error(ctx, sel.error().message);
    }
    std::FILE* mbox = nullptr;
    if (!ctx.cl.dir.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(ctx.cl.dir, ec);
        if (ec) {
            say(ctx.err, "spoolctl: export: {}: {}\n", ctx.cl.dir, ec.message());
            return kExitFailed;
        }
    } else {
        // An existing mbox is never overwritten; --append adds to it.
        const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (ctx.cl.append ? O_APPEND : O_EXCL);
        constexpr mode_t kMode = 0600; // mail is private
        const int fd = ::open(ctx.cl.mbox.c_str(), flags, kMode);
        if (fd < 0) {
            say(ctx.err, "spoolctl: export: {}: {}{}\n", ctx.cl.mbox, std::strerror(errno),
                errno == EEXIST ? " (use --append to add to it)" : "");
            return kExitFailed;
        }
        mbox = ::fdopen(fd, "a");
    }
    const std::size_t limit = ctx.cl.limit.value_or(std::numeric_limits<std::size_t>::max());
    std::uint64_t exported = 0;
    std::uint64_t bytes = 0;
    int exit_code = kExitOk;
    Status write_error;
    std::string buffer;
    std::string message;
    std::string block;
    const Status st = for_each_target(
        ctx, *sel,
        [&](const spool::Envelope& env, spool::MsgState) {
            if (auto r = read_message_into(ctx, env.id, message); !r) {
                say(ctx.err, "spoolctl: export: {}: {}\n", env.id.text(), r.error().describe());
                exit_code = kExitFailed;
                return true;
            }
            block.clear();
            if (ctx.cl.with_envelope) {
                FileEnvelope fe;
                fe.mail_from = env.mail_from;
                for (const auto& r : env.recipients) {
                    if (pending(r)) {
                        fe.recipients.push_back(r.address);
                    }
                }
                fe.klass = ctx.classes.name(env.klass);
                block = envelope_block(fe);
            }
            if (mbox != nullptr) {
                buffer.clear();
                block += message;
                append_mboxrd(buffer, mbox_from_line(env.mail_from, env.arrival_ms), block);
                if (std::fwrite(buffer.data(), 1, buffer.size(), mbox) != buffer.size()) {
                    write_error = fail(ErrorKind::kIo,
                                       fmt::format("{}: {}", ctx.cl.mbox, std::strerror(errno)));
                    return false;
                }
            } else if (auto w = write_file_atomically(ctx.cl.dir, env.id.text() + ".eml", block,
                                                      message);
                       !w) {
                write_error = w;
                return false;
            }
            ++exported;
            bytes += message.size();
            return exported < limit;
        },
        exit_code);
    if (mbox != nullptr) {
        // The export is only complete once it is on disk: flush and fsync before saying so.
        if ((std::fflush(mbox) != 0 || ::fsync(fileno(mbox)) != 0) && write_error) {
            write_error =
                fail(ErrorKind::kIo, fmt::format("{}: {}", ctx.cl.mbox, std::strerror(errno)));
        }
        std::fclose(mbox);
    }
    if (!st) {
        return fail_with(ctx, st.error());
    }
    if (!write_error) {
        return fail_with(ctx, write_error.error());
    }
    say(ctx.out, "exported {} message{} ({}) to {}\n", exported, exported == 1 ? "" : "s",
        format_size(bytes), ctx.cl.dir.empty() ? ctx.cl.mbox : ctx.cl.dir);
    return exit_code;
}

// ---- import ----

bool plausible_address(std::string_view a) {
    const auto at = a.rfind('@');
    return at != std::string_view::npos && at > 0 && at + 1 < a.size() &&
           a.find_first_of(" \t\r\n<>,") == std::string_view::npos;
}

class Importer {
public:
    explicit Importer(Context& ctx) : ctx_(ctx), pipeline_(ctx.err, "import") {}

    // Resolves what applies to every message; false (after saying why) when it cannot.
    bool prepare() {
        for (const auto& a : ctx_.cl.to) {
            if (!plausible_address(a)) {
                say(ctx_.err, "spoolctl: import: --to {}: not an address\n", a);
                return false;
            }
        }
        if (ctx_.cl.from && !ctx_.cl.from->empty() && !plausible_address(*ctx_.cl.from)) {
            say(ctx_.err,
                "spoolctl: import: --from {}: not an address (use --from '<>' for the null "
                "sender)\n",
                *ctx_.cl.from);
            return false;
        }
        if (ctx_.cl.import_class) {
            class_ = ctx_.classes.find(*ctx_.cl.import_class);
            if (!class_) {
                say(ctx_.err, "spoolctl: import: unknown class '{}'\n", *ctx_.cl.import_class);
                return false;
            }
        } else if (ctx_.config) {
            default_class_ = ctx_.config->class_id(ctx_.config->default_class);
        }
        return true;
    }

    // One message read from `source`; refused (and counted) when its envelope is incomplete.
    void add(std::string source, std::string message, std::optional<std::string> mbox_sender) {
        FileEnvelope fe = take_envelope_block(message);
        spool::NewMessage m;
        auto& env = m.envelope;
        if (ctx_.cl.from) {
            env.mail_from = *ctx_.cl.from;
        } else if (fe.mail_from) {
            env.mail_from = *fe.mail_from;
        } else if (mbox_sender) {
            env.mail_from = *mbox_sender == "MAILER-DAEMON" ? std::string() : *mbox_sender;
        } else {
            refuse(source, "no envelope sender (give --from ADDRESS, or --from '<>')");
            return;
        }
        const std::vector<std::string>& rcpts = ctx_.cl.to.empty() ? fe.recipients : ctx_.cl.to;
        if (rcpts.empty()) {
            refuse(source, "no recipients (give --to ADDRESS, or export with --with-envelope)");
            return;
        }
        for (const auto& a : rcpts) {
            if (!plausible_address(a)) {
                refuse(source, fmt::format("recipient '{}' is not an address", a));
                return;
            }
            spool::Recipient r;
            r.address = a;
            env.recipients.push_back(std::move(r));
        }
        std::optional<spool::ClassId> klass = class_;
        if (!klass && !fe.klass.empty()) {
            klass = ctx_.classes.find(fe.klass);
            if (!klass) {
                refuse(source, fmt::format("unknown class '{}' (give --class)", fe.klass));
                return;
            }
        }
        if (!klass) {
            klass = default_class_;
        }
        if (!klass) {
            refuse(source, "no class (give --class NAME, or --config for the default class)");
            return;
        }
        env.klass = *klass;
        env.id = ctx_.spool->new_id();
        env.arrival_ms = ctx_.clock->now_ms();
        env.helo = "spoolctl-import";
        if (ctx_.config && env.klass < ctx_.config->classes.size()) {
            const auto retention = ctx_.config->classes[env.klass].retention;
            env.expires_ms =
                env.arrival_ms +
                std::chrono::duration_cast<std::chrono::milliseconds>(retention).count();
        }
        m.body = to_crlf(message);
        env.size = m.body.size();
        bytes_ += env.size;
        const QueueId id = env.id;
        spool::Spool* s = ctx_.spool;
        auto shared = std::make_shared<spool::NewMessage>(std::move(m));
        pipeline_.submit(
            id, [s, shared](spool::Done d) { s->enqueue(std::move(*shared), std::move(d)); });
    }

    void refuse(std::string_view source, std::string_view why) {
        // The first few say why; a whole mbox without envelopes must not flood the terminal.
        constexpr std::uint64_t kShownRefusals = 10;
        ++refused_;
        if (refused_ <= kShownRefusals) {
            say(ctx_.err, "spoolctl: import: {}: not imported: {}\n", source, why);
        } else if (refused_ == kShownRefusals + 1) {
            say(ctx_.err, "spoolctl: import: further refusals not shown\n");
        }
    }

    int finish() {
        pipeline_.finish();
        say(ctx_.out, "imported {} message{} ({})", pipeline_.ok(), pipeline_.ok() == 1 ? "" : "s",
            format_size(bytes_));
        if (refused_ + pipeline_.failed() > 0) {
            say(ctx_.out, ", {} not imported", refused_ + pipeline_.failed());
        }
        print(ctx_.out, "\n");
        if (!ctx_.config && pipeline_.ok() > 0) {
            say(ctx_.err,
                "spoolctl: import: no --config: imported messages have no retention limit\n");
        }
        return refused_ + pipeline_.failed() > 0 ? kExitFailed : kExitOk;
    }

private:
    Context& ctx_;
    Pipeline pipeline_;
    std::optional<spool::ClassId> class_;
    std::optional<spool::ClassId> default_class_;
    std::uint64_t refused_ = 0;
    std::uint64_t bytes_ = 0;
};

Result<std::string> read_whole_file(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        return fail(ErrorKind::kIo, fmt::format("{}: {}", path, std::strerror(errno)));
    }
    std::string out;
    char buf[1U << 16U]; // NOLINT: read buffer
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
        out.append(buf, n);
    }
    const bool bad = std::ferror(f) != 0;
    std::fclose(f);
    if (bad) {
        return fail(ErrorKind::kIo, fmt::format("{}: read error", path));
    }
    return out;
}

int verb_import(Context& ctx) {
    if (ctx.cl.mbox.empty() == ctx.cl.operands.empty()) {
        return usage_error(ctx, "give .eml files or directories, or --mbox FILE (not both)");
    }
    Importer importer(ctx);
    if (!importer.prepare()) {
        return kExitUsage;
    }
    if (!ctx.cl.mbox.empty()) {
        std::FILE* f = std::fopen(ctx.cl.mbox.c_str(), "rb");
        if (f == nullptr) {
            say(ctx.err, "spoolctl: import: {}: {}\n", ctx.cl.mbox, std::strerror(errno));
            return kExitFailed;
        }
        MboxReader reader(f);
        std::uint64_t n = 0;
        while (auto m = reader.next()) {
            ++n;
            importer.add(fmt::format("{} message {}", ctx.cl.mbox, n), std::move(m->message),
                         m->sender);
        }
        std::fclose(f);
        if (reader.bad_format()) {
            say(ctx.err, "spoolctl: import: {}: not an mbox (line {} is not a From_ line)\n",
                ctx.cl.mbox, reader.line_number());
            importer.finish();
            return kExitFailed;
        }
        return importer.finish();
    }
    std::vector<std::string> files;
    for (const auto& operand : ctx.cl.operands) {
        std::error_code ec;
        if (std::filesystem::is_directory(operand, ec)) {
            std::vector<std::string> found;
            for (const auto& e : std::filesystem::directory_iterator(operand, ec)) {
                if (e.path().extension() == ".eml" && e.is_regular_file()) {
                    found.push_back(e.path().string());
                }
            }
            std::sort(found.begin(), found.end());
            files.insert(files.end(), found.begin(), found.end());
        } else {
            files.push_back(operand);
        }
        if (ec) {
            say(ctx.err, "spoolctl: import: {}: {}\n", operand, ec.message());
            return kExitFailed;
        }
    }
    for (const auto& path : files) {
        auto text = read_whole_file(path);
        if (!text) {
            importer.refuse(path, text.error().message);
            continue;
        }
        importer.add(path, std::move(*text), std::nullopt);
    }
    return importer.finish();
}

// ---- check ----

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

} // namespace

bool is_read_only(const CommandLine& cl) {
    return cl.verb == "status" || cl.verb == "list" || cl.verb == "show" || cl.verb == "export" ||
           (cl.verb == "check" && !cl.repair);
}

int run_verb(Context& ctx) {
    const std::string& v = ctx.cl.verb;
    if (v == "status") {
        return verb_status(ctx);
    }
    if (v == "list") {
        return verb_list(ctx);
    }
    if (v == "show") {
        return verb_show(ctx);
    }
    if (v == "hold" || v == "release" || v == "delete" || v == "flush" || v == "set-class") {
        return verb_write(ctx);
    }
    if (v == "pause" || v == "resume") {
        return verb_pause(ctx);
    }
    if (v == "export") {
        return verb_export(ctx);
    }
    if (v == "import") {
        return verb_import(ctx);
    }
    if (v == "check") {
        return verb_check(ctx);
    }
    return usage_error(ctx, "unknown verb");
}

} // namespace spoold::spoolctl
