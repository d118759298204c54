#include "spool/store.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "common/assert.hpp"
#include "common/log.hpp"
#include "spool/writer.hpp"

namespace spoold::spool {
namespace {

constexpr std::size_t kIdKeySize = 8;

Error no_such_message(QueueId id) {
    return Error{ErrorKind::kNotFound, fmt::format("{}: no such message", id.text())};
}

} // namespace

Result<std::optional<std::string_view>> Store::record(const lmdb::Txn& txn, QueueId id) const {
    return txn.get(t_.msg, record::msg_key(id));
}

Status Store::scan_records(const lmdb::Txn& txn, QueueId from, const RecordFn& fn) const {
    return txn.scan(t_.msg, record::msg_key(from), [&](std::string_view k, std::string_view v) {
        return fn(k.size() == kIdKeySize ? record::id_at(k, 0) : QueueId{0}, v);
    });
}

Result<std::optional<QueueId>> Store::oldest(const lmdb::Txn& txn) const {
    std::optional<QueueId> out;
    SPOOLD_CHECK(txn.scan(t_.msg, {}, [&](std::string_view k, std::string_view) {
        if (k.size() == kIdKeySize) {
            out = record::id_at(k, 0);
        }
        return false;
    }));
    return out;
}

Result<std::optional<QueueId>> Store::newest(const lmdb::Txn& txn) const {
    SPOOLD_TRY(last, txn.last_key(t_.msg));
    if (!last || last->size() < kIdKeySize) {
        return std::optional<QueueId>{};
    }
    return std::optional<QueueId>{record::id_at(*last, 0)};
}

Result<std::vector<QueueId>> Store::quarantined(const lmdb::Txn& txn, std::size_t max) const {
    std::vector<QueueId> out;
    SPOOLD_CHECK(txn.scan(t_.corrupt, {}, [&](std::string_view k, std::string_view) {
        if (out.size() >= max) {
            return false;
        }
        if (k.size() == kIdKeySize) {
            out.push_back(record::id_at(k, 0));
        }
        return true;
    }));
    return out;
}

Status Store::validate_new(const Envelope& env) {
    if (env.id.value == 0) {
        return fail(ErrorKind::kInvalid, "message without an id");
    }
    if (env.klass >= kMaxClasses) {
        return fail(ErrorKind::kInvalid,
                    fmt::format("{}: class {} out of range", env.id.text(), env.klass));
    }
    if (env.recipients.empty()) {
        return fail(ErrorKind::kInvalid, fmt::format("{}: no recipients", env.id.text()));
    }
    return {};
}

Status Store::insert(lmdb::WriteTxn& txn, const NewMessage& msg) const {
    SPOOLD_CHECK(validate_new(msg.envelope));
    SPOOLD_TRY(ref, bodies_.new_ref(txn));
    return insert(txn, msg, BodyStart{ref, 0, 0});
}

Status Store::insert(lmdb::WriteTxn& txn, const NewMessage& msg, BodyStart body) const {
    SPOOLD_CHECK(validate_new(msg.envelope));
    const QueueId id = msg.envelope.id;
    Envelope env = msg.envelope;
    env.size = msg.head.size() + body.bytes + msg.body.size();
    const bool staged = body.next_chunk >= kStagedFirstChunk;
    if (staged && bodies_.chunks_for(msg.head.size()) > kStagedFirstChunk) {
        return fail(ErrorKind::kInvalid,
                    fmt::format("{}: a head of {} bytes does not fit before the staged body",
                                id.text(), msg.head.size()));
    }
    SPOOLD_TRY(inserted,
               txn.put(t_.msg, record::msg_key(id), record::encode_envelope(env, body.ref),
                       lmdb::WriteTxn::PutMode::kNoOverwrite));
    if (!inserted) {
        return fail(ErrorKind::kInternal,
                    fmt::format("{}: queue id already in the spool", id.text()));
    }
    std::uint32_t next_chunk = body.next_chunk;
    if (!msg.head.empty()) {
        SPOOLD_TRY(after_head, bodies_.put(txn, body.ref, 0, msg.head));
        if (!staged) {
            next_chunk = after_head; // a fresh body: the rest follows the head
        }
    }
    SPOOLD_CHECK(bodies_.put(txn, body.ref, next_chunk, msg.body));
    return indexes_.add(txn, message_facts(env, body.ref));
}

Result<std::optional<Stored>> Store::load(lmdb::WriteTxn& txn, QueueId id) const {
    SPOOLD_TRY(raw, txn.get(t_.msg, record::msg_key(id)));
    if (!raw) {
        return std::optional<Stored>{};
    }
    auto env = record::decode_envelope(*raw);
    if (!env) {
        return tl::unexpected(quarantine(txn, id, *raw, env.error()).error());
    }
    const auto facts = record::decode_facts(*raw);
    // decode_envelope reads the same header first.
    SPOOLD_ASSERT(facts.has_value(), "a decodable record with an undecodable header");
    return std::optional<Stored>{Stored{std::move(*env), facts->body_ref}};
}

Status Store::move_to_corrupt(lmdb::WriteTxn& txn, QueueId id, const std::string& raw) const {
    SPOOLD_CHECK(txn.put(t_.corrupt, record::msg_key(id), raw));
    SPOOLD_CHECK(txn.del(t_.msg, record::msg_key(id)));
    return {};
}

Status Store::quarantine(lmdb::WriteTxn& txn, QueueId id, std::string_view raw,
                         const Error& why) const {
    const std::string copy(raw); // raw points into the map; the puts below may move pages
    auto facts = record::decode_facts(copy);
    if (facts && facts->id == id) {
        SPOOLD_CHECK(indexes_.remove(txn, *facts));
    }
    SPOOLD_CHECK(move_to_corrupt(txn, id, copy));
    log::error("event=spool_quarantine id={} reason={} indexes={}", id.text(),
               log::quote(why.message), facts ? "removed" : "unknown");
    return tl::unexpected(why);
}

Status Store::rewrite(lmdb::WriteTxn& txn, const MessageFacts& old_facts,
                      const Envelope& env) const {
    const std::uint64_t ref = old_facts.header.body_ref;
    SPOOLD_ASSERT(old_facts.header.id == env.id, "a message rewritten under another id");
    SPOOLD_CHECK(txn.put(t_.msg, record::msg_key(env.id), record::encode_envelope(env, ref)));
    return indexes_.update(txn, old_facts, message_facts(env, ref));
}

Status Store::erase(lmdb::WriteTxn& txn, const MessageFacts& f) const {
    SPOOLD_CHECK(indexes_.remove(txn, f));
    SPOOLD_CHECK(txn.del(t_.msg, record::msg_key(f.header.id)));
    return bodies_.erase(txn, f.header.body_ref);
}

Status Store::modify(lmdb::WriteTxn& txn, QueueId id,
                     const std::function<Status(Envelope&)>& change) const {
    SPOOLD_TRY(stored, load(txn, id));
    if (!stored) {
        return tl::unexpected(no_such_message(id));
    }
    Envelope updated = stored->env;
    SPOOLD_CHECK(change(updated));
    if (updated == stored->env) {
        return {};
    }
    return rewrite(txn, stored->facts(), updated);
}

Status Store::remove(lmdb::WriteTxn& txn, QueueId id) const {
    SPOOLD_TRY(stored, load(txn, id));
    if (!stored) {
        return tl::unexpected(no_such_message(id));
    }
    return erase(txn, stored->facts());
}

Status Store::record_outcome(lmdb::WriteTxn& txn, QueueId id,
                             const std::vector<RecipientUpdate>& updates,
                             const std::optional<NewMessage>& dsn) const {
    SPOOLD_TRY(stored, load(txn, id));
    if (!stored) {
        return tl::unexpected(no_such_message(id));
    }
    return apply_outcome(txn, *stored, updates, dsn);
}

Status Store::apply_outcome(lmdb::WriteTxn& txn, const Stored& stored,
                            const std::vector<RecipientUpdate>& updates,
                            const std::optional<NewMessage>& dsn) const {
    const QueueId id = stored.env.id;
    // The states after the updates decide between erase and rewrite; the envelope is
    // copied only for a rewrite (most outcomes deliver the last recipient and erase).
    std::vector<RcptState> states;
    states.reserve(stored.env.recipients.size());
    for (const Recipient& r : stored.env.recipients) {
        states.push_back(r.state);
    }
    for (const RecipientUpdate& u : updates) {
        if (u.index >= states.size()) {
            return fail(ErrorKind::kInvalid,
                        fmt::format("{}: no recipient {}", id.text(), u.index));
        }
        states[u.index] = u.state;
    }
    if (dsn) {
        // Checked before the first write, so a refused DSN leaves the batch's txn clean.
        SPOOLD_CHECK(validate_new(dsn->envelope));
        SPOOLD_TRY(exists, record(txn, dsn->envelope.id));
        if (exists) {
            return fail(ErrorKind::kInternal,
                        fmt::format("{}: DSN id already in the spool", dsn->envelope.id.text()));
        }
    }
    const MessageFacts old_facts = stored.facts();
    if (std::all_of(states.begin(), states.end(), [](RcptState s) { return is_final(s); })) {
        SPOOLD_CHECK(erase(txn, old_facts));
    } else {
        Envelope updated = stored.env;
        for (const RecipientUpdate& u : updates) {
            Recipient& r = updated.recipients[u.index];
            r.state = u.state;
            r.next_attempt_ms = u.state == RcptState::kDeferred ? u.next_attempt_ms : 0;
            r.last_response = u.response;
            if (u.count_attempt) {
                ++r.attempts;
            }
        }
        SPOOLD_CHECK(rewrite(txn, old_facts, updated));
    }
    if (dsn) {
        return insert(txn, *dsn);
    }
    return {};
}

Status Store::expire(lmdb::WriteTxn& txn, const Expiry& e, UnixMillis now) const {
    SPOOLD_TRY(stored, load(txn, e.id));
    if (!stored) {
        return tl::unexpected(no_such_message(e.id));
    }
    const Envelope& env = stored->env;
    if (!record::facts_of(env).in_expiry || env.expires_ms > now) {
        return fail(ErrorKind::kInvalid, fmt::format("{}: not expired", e.id.text()));
    }
    if (e.hold) {
        Envelope updated = env;
        updated.held = true;
        updated.flags |= kFlagExpiredHold;
        return rewrite(txn, stored->facts(), updated);
    }
    std::vector<RecipientUpdate> updates;
    for (std::uint32_t i = 0; i < env.recipients.size(); ++i) {
        if (!is_final(env.recipients[i].state)) {
            RecipientUpdate u;
            u.index = i;
            u.state = RcptState::kExpired;
            u.response = e.response;
            u.count_attempt = false;
            updates.push_back(std::move(u));
        }
    }
    return apply_outcome(txn, *stored, updates, e.dsn);
}

Status Store::record_delay_warning(lmdb::WriteTxn& txn, QueueId id, const NewMessage& dsn) const {
    SPOOLD_TRY(stored, load(txn, id));
    if (!stored) {
        return tl::unexpected(no_such_message(id));
    }
    if ((stored->env.flags & kFlagDelayWarned) != 0) {
        return {};
    }
    SPOOLD_CHECK(validate_new(dsn.envelope));
    Envelope updated = stored->env;
    updated.flags |= kFlagDelayWarned;
    SPOOLD_CHECK(rewrite(txn, stored->facts(), updated));
    return insert(txn, dsn);
}

Status Store::promote_due(lmdb::WriteTxn& txn, UnixMillis now, std::size_t max) const {
    SPOOLD_TRY(due, indexes_.due(txn, now, std::min(max, kMaxPromotePerOp)));
    for (const TimedId& entry : due) {
        auto stored = load(txn, entry.id);
        if (!stored) {
            if (may_be_dirty(stored.error())) {
                return tl::unexpected(stored.error());
            }
            continue; // quarantined; its index entries went with it
        }
        if (!*stored) {
            // An index entry without its message: drop it rather than trip on it forever.
            SPOOLD_CHECK(indexes_.drop_deferred(txn, entry));
            continue;
        }
        Envelope updated = (*stored)->env;
        for (Recipient& r : updated.recipients) {
            if (r.state == RcptState::kDeferred && r.next_attempt_ms <= now) {
                r.state = RcptState::kQueued;
                r.next_attempt_ms = 0;
            }
        }
        SPOOLD_CHECK(rewrite(txn, (*stored)->facts(), updated));
    }
    return {};
}

} // namespace spoold::spool
