#include "spool/indexes.hpp"

#include <limits>
#include <string_view>

#include <fmt/format.h>

#include "common/assert.hpp"

namespace spoold::spool {
namespace {

using record::IndexFacts;

constexpr std::size_t kCounterKeySize = 2;    // class | state
constexpr std::size_t kCounterValueSize = 16; // messages | bytes

// One delivery index: which entry a message's facts call for, and how check() speaks of it.
// Every index is an empty-valued table whose key ends in (or holds) the queue id.
struct IndexSpec {
    const char* name; // also the table's name
    lmdb::Dbi Tables::*table;
    std::size_t key_size; // entries of another size are malformed
    std::size_t id_offset;
    // The entry a message with these facts has in this index; empty when it is not in it.
    std::optional<std::string> (*entry)(const IndexFacts& f);
    // The key check() looks a record up under, if not `entry`: the ready index also looks
    // for a message that should not be in it, since its key needs no time.
    std::optional<std::string> (*probe)(const IndexFacts& f);
    // check()'s words: where an entry points ("class 2 id X", "id X at T") ...
    std::string (*describe)(std::string_view key);
    // ... a record that lacks its entry (or, found by `probe`, has one it should not) ...
    std::string (*record_problem)(const IndexFacts& f, bool present);
    // ... and an entry its record does not call for ("disagrees with its record").
    std::string (*disagreement)(const IndexFacts& f);
};

std::optional<std::string> ready_entry(const IndexFacts& f) {
    if (f.state != MsgState::kReady) {
        return std::nullopt;
    }
    return record::ready_key(f.klass, f.id);
}

std::optional<std::string> ready_probe(const IndexFacts& f) {
    return record::ready_key(f.klass, f.id);
}

std::string ready_describe(std::string_view key) {
    return fmt::format("class {} id {}", static_cast<ClassId>(key[0]),
                       record::id_at(key, 1).text());
}

std::string ready_record_problem(const IndexFacts& f, bool present) {
    return fmt::format("{} but {} the ready index of class {}", to_string(f.state),
                       present ? "in" : "not in", f.klass);
}

std::string ready_disagreement(const IndexFacts& f) {
    return fmt::format("but the record is {} in class {}", to_string(f.state), f.klass);
}

std::optional<std::string> deferred_entry(const IndexFacts& f) {
    if (f.state != MsgState::kDeferred) {
        return std::nullopt;
    }
    return record::time_key(f.due, f.id);
}

std::string deferred_record_problem(const IndexFacts& f, bool /*present*/) {
    return fmt::format("deferred at {} but not in the deferred index", f.due);
}

std::optional<std::string> expiry_entry(const IndexFacts& f) {
    if (!f.in_expiry) {
        return std::nullopt;
    }
    return record::time_key(f.expires, f.id);
}

std::string expiry_record_problem(const IndexFacts& f, bool /*present*/) {
    return fmt::format("expires at {} but not in the expiry index", f.expires);
}

std::string time_describe(std::string_view key) {
    return fmt::format("id {} at {}", record::id_at(key, 8).text(),
                       static_cast<UnixMillis>(record::read_be64(key)));
}

std::string time_disagreement(const IndexFacts& /*f*/) { return "disagrees with its record"; }

constexpr std::size_t kReadyKeySize = 1 + 8; // class | id
constexpr std::size_t kTimeKeySize = 8 + 8;  // time | id

constexpr IndexSpec kIndexes[] = {
    {"ready", &Tables::ready, kReadyKeySize, 1, ready_entry, ready_probe, ready_describe,
     ready_record_problem, ready_disagreement},
    {"deferred", &Tables::deferred, kTimeKeySize, 8, deferred_entry, nullptr, time_describe,
     deferred_record_problem, time_disagreement},
    {"expiry", &Tables::expiry, kTimeKeySize, 8, expiry_entry, nullptr, time_describe,
     expiry_record_problem, time_disagreement},
};

void check_indexable(const IndexFacts& f) {
    // Every path validates the class (new messages, set_class) or decodes it range-checked;
    // a class past the counters would be counted nowhere.
    SPOOLD_ASSERT(f.klass < kMaxClasses, "a message outside the counted classes");
}

} // namespace

Status Indexes::add(lmdb::WriteTxn& txn, const IndexFacts& f) const {
    check_indexable(f);
    for (const IndexSpec& index : kIndexes) {
        if (const auto key = index.entry(f)) {
            SPOOLD_CHECK(txn.put(t_.*index.table, *key, {}));
        }
    }
    return counter_add(txn, f.klass, f.state, 1, static_cast<std::int64_t>(f.size));
}

Status Indexes::remove(lmdb::WriteTxn& txn, const IndexFacts& f) const {
    check_indexable(f);
    for (const IndexSpec& index : kIndexes) {
        if (const auto key = index.entry(f)) {
            SPOOLD_CHECK(txn.del(t_.*index.table, *key));
        }
    }
    return counter_add(txn, f.klass, f.state, -1, -static_cast<std::int64_t>(f.size));
}

Status Indexes::clear(lmdb::WriteTxn& txn) const {
    for (const IndexSpec& index : kIndexes) {
        SPOOLD_CHECK(txn.clear(t_.*index.table));
    }
    return txn.clear(t_.counters);
}

Status Indexes::drop_deferred(lmdb::WriteTxn& txn, TimedId entry) const {
    // The key exactly as due() read it (time_key would clamp a time before 1970).
    const std::string key =
        record::be64(static_cast<std::uint64_t>(entry.at)) + record::msg_key(entry.id);
    SPOOLD_CHECK(txn.del(t_.deferred, key));
    return {};
}

Status Indexes::counter_add(lmdb::WriteTxn& txn, ClassId klass, MsgState state, std::int64_t dmsg,
                            std::int64_t dbytes) const {
    const std::string key = record::counter_key(klass, state);
    SPOOLD_TRY(cur, txn.get(t_.counters, key));
    std::uint64_t msgs = 0;
    std::uint64_t bytes = 0;
    if (cur && cur->size() == kCounterValueSize) {
        msgs = record::read_be64(*cur);
        bytes = record::read_be64(cur->substr(8));
    }
    msgs += static_cast<std::uint64_t>(dmsg);
    bytes += static_cast<std::uint64_t>(dbytes);
    SPOOLD_CHECK(txn.put(t_.counters, key, record::be64(msgs) + record::be64(bytes)));
    return {};
}

Status Indexes::read_counters(const lmdb::Txn& txn, Counters& out, const Problem* malformed) const {
    return txn.scan(t_.counters, {}, [&](std::string_view k, std::string_view v) {
        const bool valid = k.size() == kCounterKeySize && v.size() == kCounterValueSize &&
                           static_cast<std::uint8_t>(k[0]) < kMaxClasses &&
                           static_cast<std::uint8_t>(k[1]) < kNumMsgStates;
        if (valid) {
            const auto klass = static_cast<std::uint8_t>(k[0]);
            const auto state = static_cast<std::uint8_t>(k[1]);
            out.messages[klass][state] = record::read_be64(v);
            out.bytes[klass][state] = record::read_be64(v.substr(8));
        } else if (malformed != nullptr) {
            (*malformed)("counters: malformed entry");
        }
        return true;
    });
}

Result<Counters> Indexes::counters(const lmdb::Txn& txn) const {
    Counters c;
    SPOOLD_CHECK(read_counters(txn, c, nullptr));
    return c;
}

Result<std::vector<QueueId>> Indexes::ready_after(const lmdb::Txn& txn, ClassId klass,
                                                  QueueId after, std::size_t max) const {
    std::vector<QueueId> out;
    if (klass >= kMaxClasses || after.value == std::numeric_limits<std::uint64_t>::max()) {
        return out;
    }
    SPOOLD_CHECK(txn.scan(t_.ready, record::ready_key(klass, QueueId{after.value + 1}),
                          [&](std::string_view k, std::string_view) {
                              if (out.size() >= max || k.size() != kReadyKeySize ||
                                  static_cast<std::uint8_t>(k[0]) != klass) {
                                  return false;
                              }
                              out.push_back(record::id_at(k, 1));
                              return true;
                          }));
    return out;
}

Result<std::vector<TimedId>> Indexes::time_scan(const lmdb::Txn& txn, lmdb::Dbi dbi, UnixMillis now,
                                                std::size_t max) const {
    std::vector<TimedId> out;
    SPOOLD_CHECK(txn.scan(dbi, {}, [&](std::string_view k, std::string_view) {
        if (out.size() >= max || k.size() != kTimeKeySize) {
            return false;
        }
        const auto at = static_cast<UnixMillis>(record::read_be64(k));
        if (at > now) {
            return false;
        }
        out.push_back(TimedId{at, record::id_at(k, 8)});
        return true;
    }));
    return out;
}

Result<std::vector<TimedId>> Indexes::due(const lmdb::Txn& txn, UnixMillis now,
                                          std::size_t max) const {
    return time_scan(txn, t_.deferred, now, max);
}

Result<std::vector<TimedId>> Indexes::expired(const lmdb::Txn& txn, UnixMillis now,
                                              std::size_t max) const {
    return time_scan(txn, t_.expiry, now, max);
}

Status Indexes::check_record(const lmdb::Txn& txn, const IndexFacts& f,
                             const Problem& problem) const {
    for (const IndexSpec& index : kIndexes) {
        const auto want = index.entry(f);
        const auto look = index.probe != nullptr ? index.probe(f) : want;
        if (!look) {
            continue;
        }
        SPOOLD_TRY(found, txn.get(t_.*index.table, *look));
        const bool present = found.has_value();
        if (present != want.has_value()) {
            problem(fmt::format("record {}: {}", f.id.text(), index.record_problem(f, present)));
        }
    }
    return {};
}

Status Indexes::check_entries(const lmdb::Txn& txn, const FactsOf& facts_of, const Problem& problem,
                              std::uint64_t& entries) const {
    for (const IndexSpec& index : kIndexes) {
        Status inner;
        SPOOLD_CHECK(txn.scan(t_.*index.table, {}, [&](std::string_view k, std::string_view) {
            ++entries;
            if (k.size() != index.key_size) {
                problem(fmt::format("{} index: malformed key", index.name));
                return true;
            }
            auto f = facts_of(record::id_at(k, index.id_offset));
            if (!f) {
                inner = tl::unexpected(f.error());
                return false;
            }
            if (!*f) {
                problem(fmt::format("{} index: {} has no record", index.name, index.describe(k)));
            } else if (index.entry(**f) != std::optional<std::string>(k)) {
                problem(fmt::format("{} index: {} {}", index.name, index.describe(k),
                                    index.disagreement(**f)));
            }
            return true;
        }));
        SPOOLD_CHECK(inner);
    }
    return {};
}

Status Indexes::check_counters(const lmdb::Txn& txn, const Counters& scanned,
                               const Problem& problem) const {
    Counters stored;
    SPOOLD_CHECK(read_counters(txn, stored, &problem));
    for (std::size_t c = 0; c < kMaxClasses; ++c) {
        for (std::size_t s = 0; s < kNumMsgStates; ++s) {
            if (stored.messages[c][s] != scanned.messages[c][s] ||
                stored.bytes[c][s] != scanned.bytes[c][s]) {
                problem(fmt::format("counters: class {} {} stores {} messages / {} bytes, scan "
                                    "counts {} / {}",
                                    c, to_string(static_cast<MsgState>(s)), stored.messages[c][s],
                                    stored.bytes[c][s], scanned.messages[c][s],
                                    scanned.bytes[c][s]));
            }
        }
    }
    return {};
}

} // namespace spoold::spool
