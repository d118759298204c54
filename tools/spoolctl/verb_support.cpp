#include "tools/spoolctl/verb_support.hpp"

#include <algorithm>

namespace spoold::spoolctl {

void print(std::FILE* f, std::string_view text) { std::fwrite(text.data(), 1, text.size(), f); }

bool pending(const spool::Recipient& r) {
    return r.state == spool::RcptState::kQueued || r.state == spool::RcptState::kDeferred;
}

void Pipeline::submit(QueueId id, const std::function<void(spool::Done)>& op) {
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

void Pipeline::finish() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return in_flight_ == 0; });
}

int fail_with(Context& ctx, const Error& e) {
    say(ctx.err, "spoolctl: {}: {}\n", ctx.cl.verb, e.describe());
    return kExitFailed;
}

int usage_error(Context& ctx, std::string_view message) {
    say(ctx.err, "spoolctl: {}: {}\n", ctx.cl.verb, message);
    return kExitUsage;
}

Result<Filter> resolved_filter(const Context& ctx) {
    Filter f = for_mailboxes(ctx.cl.filter, ctx.recipient_delimiter, ctx.aliases_of);
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

namespace {

// The messages a recipient filter can match, from the recipient index: every id filed under
// each pattern's address (and its +tag forms), in id order, duplicates removed. None when a
// pattern is not a whole address (a domain, the null sender) or the spool has no index yet
// (format 1 opened read-only): then the envelopes are scanned. Memory: the ids of those
// mailboxes' mail, not the spool's.
Result<std::optional<std::vector<QueueId>>> indexed_candidates(Context& ctx, const Filter& filter) {
    using Ids = std::optional<std::vector<QueueId>>;
    if (filter.recipients.empty()) {
        return Ids{};
    }
    std::vector<QueueId> ids;
    for (const AddressPattern& p : filter.recipients) {
        const auto address = p.address();
        if (!address) {
            return Ids{};
        }
        for (const auto form : {spool::AddressForm::kExact, spool::AddressForm::kTagged}) {
            if (form == spool::AddressForm::kTagged && p.tag_delimiter() == 0) {
                continue;
            }
            std::string resume;
            do {
                auto page =
                    ctx.spool->recipient_page(*address, form, p.tag_delimiter(), resume, kMaxPage);
                if (!page && page.error().kind == ErrorKind::kUnavailable) {
                    return Ids{};
                }
                if (!page) {
                    return tl::unexpected(page.error());
                }
                ids.insert(ids.end(), page->ids.begin(), page->ids.end());
                resume = std::move(page->resume);
            } while (!resume.empty());
        }
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    return Ids{std::move(ids)};
}

} // namespace

Status scan(Context& ctx, const Filter& filter, const MatchFn& fn,
            const std::function<void()>& on_page) {
    SPOOLD_TRY(candidates, indexed_candidates(ctx, filter));
    if (candidates) {
        std::size_t in_page = 0;
        for (const QueueId id : *candidates) {
            SPOOLD_TRY(env, ctx.spool->get(id));
            if (!env) {
                continue; // delivered or removed since the index was read
            }
            const auto state = spool::message_state(*env);
            if (filter.matches(*env, state, ctx.clock->now_ms()) && !fn(*env, state)) {
                return {};
            }
            if (++in_page == kFirstPage && on_page) {
                in_page = 0;
                on_page();
            }
        }
        return {};
    }
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

namespace {

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

} // namespace

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

Status read_message_into(Context& ctx, QueueId id, std::string& out, std::size_t limit,
                         bool headers_only) {
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
    if (v && *v) {
        return **v;
    }
    return fallback; // returning the parameter moves it (a ?: copied it)
}

} // namespace spoold::spoolctl
