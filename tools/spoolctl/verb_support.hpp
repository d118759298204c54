// What the spoolctl verbs share: output helpers, the bounded write pipeline, the selection
// of messages by ids, filter or --all, paged scans, and reading a stored message. No verb
// lives here, and nothing here decides an exit code but the two error helpers.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <fmt/format.h>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "tools/spoolctl/verbs.hpp"

namespace spoold::spoolctl {

// Listing pages start small so the first rows print at once on any spool, then grow so a
// full scan costs few transactions.
inline constexpr std::size_t kFirstPage = 64;
inline constexpr std::size_t kMaxPage = 4096;
// Writes in flight at once: enough for the group-commit writer to batch many per commit,
// few enough that a filter over millions never queues millions of closures.
inline constexpr std::size_t kMaxInFlight = 2048;
inline constexpr std::size_t kBodyReadBytes = 1U << 20U;

using MatchFn = std::function<bool(const spool::Envelope&, spool::MsgState)>;

void print(std::FILE* f, std::string_view text);

template <typename... Args>
void say(std::FILE* f, fmt::format_string<Args...> format, Args&&... args) {
    print(f, fmt::format(format, std::forward<Args>(args)...));
}

// A recipient still waiting for delivery (queued or deferred).
bool pending(const spool::Recipient& r);

// Submits asynchronous spool writes with a bound on how many are in flight, and counts
// the outcomes. Completions arrive on the spool's writer thread.
class Pipeline {
public:
    Pipeline(std::FILE* err, std::string verb) : err_(err), verb_(std::move(verb)) {}
    Pipeline(const Pipeline&) = delete;
    Pipeline& operator=(const Pipeline&) = delete;
    ~Pipeline() { finish(); }

    void submit(QueueId id, const std::function<void(spool::Done)>& op);
    void finish();

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

// "spoolctl: VERB: ..." on stderr; kExitFailed and kExitUsage respectively.
int fail_with(Context& ctx, const Error& e);
int usage_error(Context& ctx, std::string_view message);

// The filter with --class resolved against the class names, and each --recipient address
// standing for its mailbox (+tag forms, aliases: for_mailboxes).
Result<Filter> resolved_filter(const Context& ctx);

// Calls fn for each message matching `filter` in id order until fn returns false, and
// on_page (when given) after each page. Memory holds one page, whatever the spool size; a
// recipient filter reads only those mailboxes' messages, through the recipient index.
Status scan(Context& ctx, const Filter& filter, const MatchFn& fn,
            const std::function<void()>& on_page = {});

// The messages a verb acts on: the given ids, else the filter, else (with --all) every
// message.
struct Selection {
    std::vector<QueueId> ids;
    bool by_filter = false;
};

Result<Selection> select_targets(Context& ctx, const std::vector<std::string>& operands,
                                 bool default_all);

// Calls fn for each selected message that exists (ids) or matches (filter). Ids not in
// the spool are reported and set exit_code to kExitFailed.
Status for_each_target(Context& ctx, const Selection& sel, const MatchFn& fn, int& exit_code);

// Reads a whole message into `out` (replacing its contents). Callers that read many
// messages pass the same string: reusing its capacity keeps malloc from growing and
// trimming the heap for every message, which dominated export time on big messages.
Status read_message_into(Context& ctx, QueueId id, std::string& out,
                         std::size_t limit = std::numeric_limits<std::size_t>::max(),
                         bool headers_only = false);

// A meta value, or `fallback` when it is absent or unreadable.
std::string meta_or(Context& ctx, std::string_view key, std::string fallback);

} // namespace spoold::spoolctl
