#include "spool/indexes.hpp"

#include <algorithm>
#include <limits>
#include <string_view>

#include <fmt/format.h>

#include "common/assert.hpp"

namespace spoold::spool {
namespace {

using record::IndexFacts;
using Keys = std::vector<std::string>;

constexpr std::size_t kCounterKeySize = 2;    // class | state
constexpr std::size_t kCounterValueSize = 16; // messages | bytes
constexpr std::size_t kIdSize = 8;

// One index: which entries a message's facts call for, and how check() speaks of it. Every
// index is an empty-valued table whose key ends in the queue id.
struct IndexSpec {
    const char* name; // how check() names it
    lmdb::Dbi Tables::*table;
    std::uint32_t since; // the spool format that added it (tables.hpp)
    // Derived from the recipients (RecipientFacts), which only a decoded record gives.
    bool from_recipients;
    // Entries of another size are malformed; 0 = variable, at least one byte and the id.
    std::size_t key_size;
    // A removed message's entries stay until the sweep (rcpt_gone lists them): removing a
    // message must not dirty a page per entry where entries of one batch share no pages.
    bool swept;
    // The entries a message with these facts has in this index, appended to `out`.
    void (*entries)(const MessageFacts& f, Keys& out);
    // The key check() looks a record up under, if not its entries: the ready index also looks
    // for a message that should not be in it, since its key needs no time.
    std::optional<std::string> (*probe)(const IndexFacts& f);
    // check()'s words: where an entry points ("class 2 id X", "id X at T") ...
    std::string (*describe)(std::string_view key);
    // ... a record that lacks an entry (or, found by `probe`, has one it should not) ...
    std::string (*record_problem)(const IndexFacts& f, std::string_view key, bool present);
    // ... and an entry its record does not call for ("disagrees with its record").
    std::string (*disagreement)(const IndexFacts& f);
};

void ready_entries(const MessageFacts& f, Keys& out) {
    if (f.header.state == MsgState::kReady) {
        out.push_back(record::ready_key(f.header.klass, f.header.id));
    }
}

std::optional<std::string> ready_probe(const IndexFacts& f) {
    return record::ready_key(f.klass, f.id);
}

std::string ready_describe(std::string_view key) {
    return fmt::format("class {} id {}", static_cast<ClassId>(key[0]),
                       record::id_at(key, 1).text());
}

std::string ready_record_problem(const IndexFacts& f, std::string_view /*key*/, bool present) {
    return fmt::format("{} but {} the ready index of class {}", to_string(f.state),
                       present ? "in" : "not in", f.klass);
}

std::string ready_disagreement(const IndexFacts& f) {
    return fmt::format("but the record is {} in class {}", to_string(f.state), f.klass);
}

void deferred_entries(const MessageFacts& f, Keys& out) {
    if (f.header.state == MsgState::kDeferred) {
        out.push_back(record::time_key(f.header.due, f.header.id));
    }
}

std::string deferred_record_problem(const IndexFacts& f, std::string_view /*key*/,
                                    bool /*present*/) {
    return fmt::format("deferred at {} but not in the deferred index", f.due);
}

void expiry_entries(const MessageFacts& f, Keys& out) {
    if (f.header.in_expiry) {
        out.push_back(record::time_key(f.header.expires, f.header.id));
    }
}

std::string expiry_record_problem(const IndexFacts& f, std::string_view /*key*/, bool /*present*/) {
    return fmt::format("expires at {} but not in the expiry index", f.expires);
}

std::string time_describe(std::string_view key) {
    return fmt::format("id {} at {}", record::id_at(key, 8).text(),
                       static_cast<UnixMillis>(record::read_be64(key)));
}

std::string disagrees(const IndexFacts& /*f*/) { return "disagrees with its record"; }

void rcpt_entries(const MessageFacts& f, Keys& out) {
    if (f.recipients) {
        for (const std::string& a : f.recipients->addresses) {
            out.push_back(record::rcpt_key(a, f.header.id));
        }
    }
}

// domain | 0 | local | 0 | id, or class | domain | 0 | id: the text parts, printable.
std::string printable_part(std::string_view part) {
    std::string out;
    for (const char c : part) {
        out += c == '\0' ? '|' : c;
    }
    return out;
}

std::string rcpt_describe(std::string_view key) {
    std::string text = printable_part(key.substr(0, key.size() - kIdSize - 1));
    const auto bar = text.find('|');
    if (bar != std::string::npos) { // domain|local -> local@domain
        text = text.substr(bar + 1) + "@" + text.substr(0, bar);
    }
    return fmt::format("{} id {}", text, record::id_at_end(key).text());
}

std::string rcpt_record_problem(const IndexFacts& /*f*/, std::string_view key, bool /*present*/) {
    return fmt::format("not in the recipient index as {}", rcpt_describe(key));
}

void ready_domain_entries(const MessageFacts& f, Keys& out) {
    if (f.recipients && f.header.state == MsgState::kReady) {
        for (const std::string& d : f.recipients->ready_domains) {
            out.push_back(record::ready_domain_key(f.header.klass, d, f.header.id));
        }
    }
}

std::string ready_domain_describe(std::string_view key) {
    return fmt::format("class {} domain \"{}\" id {}", static_cast<ClassId>(key[0]),
                       printable_part(key.substr(1, key.size() - 1 - kIdSize - 1)),
                       record::id_at_end(key).text());
}

std::string ready_domain_record_problem(const IndexFacts& /*f*/, std::string_view key,
                                        bool /*present*/) {
    return fmt::format("not in the ready-by-domain index as {}", ready_domain_describe(key));
}

void dsn_entries(const MessageFacts& f, Keys& out) {
    if (f.header.dsn) {
        out.push_back(record::msg_key(f.header.id));
    }
}

std::string dsn_describe(std::string_view key) {
    return fmt::format("id {}", record::id_at_end(key).text());
}

std::string dsn_record_problem(const IndexFacts& /*f*/, std::string_view /*key*/,
                               bool /*present*/) {
    return "a DSN but not in the DSN index";
}

constexpr std::size_t kReadyKeySize = 1 + kIdSize; // class | id
constexpr std::size_t kTimeKeySize = 8 + kIdSize;  // time | id

constexpr IndexSpec kIndexes[] = {
    {"ready", &Tables::ready, 1, false, kReadyKeySize, false, ready_entries, ready_probe,
     ready_describe, ready_record_problem, ready_disagreement},
    {"deferred", &Tables::deferred, 1, false, kTimeKeySize, false, deferred_entries, nullptr,
     time_describe, deferred_record_problem, disagrees},
    {"expiry", &Tables::expiry, 1, false, kTimeKeySize, false, expiry_entries, nullptr,
     time_describe, expiry_record_problem, disagrees},
    {"dsn", &Tables::dsn, 2, false, kIdSize, false, dsn_entries, nullptr, dsn_describe,
     dsn_record_problem, disagrees},
    {"recipient", &Tables::rcpt, 2, true, 0, true, rcpt_entries, nullptr, rcpt_describe,
     rcpt_record_problem, disagrees},
    {"ready-by-domain", &Tables::ready_domain, 2, true, 0, false, ready_domain_entries, nullptr,
     ready_domain_describe, ready_domain_record_problem, disagrees},
};

void check_indexable(const IndexFacts& f) {
    // Every path validates the class (new messages, set_class) or decodes it range-checked;
    // a class past the counters would be counted nowhere.
    SPOOLD_ASSERT(f.klass < kMaxClasses, "a message outside the counted classes");
}

// The entries of one index for `f`, sorted (for the difference in update()).
Keys entries_of(const IndexSpec& index, const MessageFacts& f) {
    Keys keys;
    index.entries(f, keys);
    std::sort(keys.begin(), keys.end());
    return keys;
}

static_assert(std::size(kIndexes) == kNumIndexes);

// rcpt_gone lists one index's keys: the recipient index is the one swept.
constexpr std::size_t kSweptIndex = 4;
constexpr bool only_swept(std::size_t i) {
    for (std::size_t j = 0; j < std::size(kIndexes); ++j) {
        if (kIndexes[j].swept != (j == i)) {
            return false;
        }
    }
    return kIndexes[i].table == &Tables::rcpt;
}
static_assert(only_swept(kSweptIndex));

// FNV-1a over the key, then splitmix64's finaliser: spreads keys that share long prefixes.
std::uint64_t key_hash(std::string_view key) {
    constexpr std::uint64_t kFnvOffset = 14695981039346656037ULL;
    constexpr std::uint64_t kFnvPrime = 1099511628211ULL;
    std::uint64_t h = kFnvOffset;
    for (const char c : key) {
        h = (h ^ static_cast<unsigned char>(c)) * kFnvPrime;
    }
    h = (h ^ (h >> 30U)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27U)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31U);
}

bool well_formed(const IndexSpec& index, std::string_view key) {
    return index.key_size != 0 ? key.size() == index.key_size : key.size() > kIdSize;
}

} // namespace

MessageFacts message_facts(const Envelope& env, std::uint64_t body_ref) {
    return MessageFacts(record::facts_of(env, body_ref), record::recipient_facts_of(env));
}

bool Indexes::adds_ready_entry(const MessageFacts& before, const MessageFacts& after) {
    Keys had;
    ready_entries(before, had);
    ready_domain_entries(before, had);
    Keys has;
    ready_entries(after, has);
    ready_domain_entries(after, has);
    return std::any_of(has.begin(), has.end(), [&had](const std::string& k) {
        return std::find(had.begin(), had.end(), k) == had.end();
    });
}

Status Indexes::put_entries(lmdb::WriteTxn& txn, const MessageFacts& f, std::uint32_t after) const {
    Keys keys;
    for (const IndexSpec& index : kIndexes) {
        if (index.since <= after) {
            continue;
        }
        keys.clear();
        index.entries(f, keys);
        for (const std::string& key : keys) {
            SPOOLD_CHECK(txn.put(t_.*index.table, key, {}));
        }
    }
    return {};
}

Status Indexes::add(lmdb::WriteTxn& txn, const MessageFacts& f) const {
    check_indexable(f.header);
    if (f.recipients) {
        SPOOLD_CHECK(sweep_id(txn, f.header.id));
    }
    SPOOLD_CHECK(put_entries(txn, f, 0));
    return counter_add(txn, f.header.klass, f.header.state, 1,
                       static_cast<std::int64_t>(f.header.size));
}

bool Indexes::lacks_index(std::uint32_t format) {
    return std::any_of(std::begin(kIndexes), std::end(kIndexes),
                       [format](const IndexSpec& index) { return index.since > format; });
}

Status Indexes::add_entries_after(lmdb::WriteTxn& txn, const MessageFacts& f,
                                  std::uint32_t format) const {
    return put_entries(txn, f, format);
}

Status Indexes::remove(lmdb::WriteTxn& txn, const MessageFacts& f) const {
    check_indexable(f.header);
    Keys keys;
    std::string swept; // one rcpt_gone entry instead of a random leaf page per key
    for (const IndexSpec& index : kIndexes) {
        keys.clear();
        index.entries(f, keys);
        for (const std::string& key : keys) {
            if (index.swept) {
                record::append_key_list(swept, key);
            } else {
                SPOOLD_CHECK(txn.del(t_.*index.table, key));
            }
        }
    }
    if (!swept.empty()) {
        SPOOLD_ASSERT(t_.rcpt_gone != kMissingTable, "a removal in a spool not upgraded");
        const std::string id = record::msg_key(f.header.id);
        SPOOLD_TRY(earlier, txn.get(t_.rcpt_gone, id));
        if (earlier) {
            swept.append(*earlier); // not expected (insert sweeps its id), but never lost
        }
        SPOOLD_CHECK(txn.put(t_.rcpt_gone, id, swept));
    }
    return counter_add(txn, f.header.klass, f.header.state, -1,
                       -static_cast<std::int64_t>(f.header.size));
}

Status Indexes::update(lmdb::WriteTxn& txn, const MessageFacts& before,
                       const MessageFacts& after) const {
    check_indexable(before.header);
    check_indexable(after.header);
    SPOOLD_ASSERT(before.header.id == after.header.id, "an update that changes the id");
    for (const IndexSpec& index : kIndexes) {
        const Keys old_keys = entries_of(index, before);
        const Keys new_keys = entries_of(index, after);
        if (old_keys == new_keys) {
            continue; // the common case: a delivery attempt changes one or two indexes
        }
        Keys gone;
        Keys added;
        std::set_difference(old_keys.begin(), old_keys.end(), new_keys.begin(), new_keys.end(),
                            std::back_inserter(gone));
        std::set_difference(new_keys.begin(), new_keys.end(), old_keys.begin(), old_keys.end(),
                            std::back_inserter(added));
        for (const std::string& key : gone) {
            SPOOLD_CHECK(txn.del(t_.*index.table, key));
        }
        for (const std::string& key : added) {
            SPOOLD_CHECK(txn.put(t_.*index.table, key, {}));
        }
    }
    const IndexFacts& b = before.header;
    const IndexFacts& a = after.header;
    if (b.klass == a.klass && b.state == a.state) {
        if (b.size == a.size) {
            return {};
        }
        return counter_add(txn, a.klass, a.state, 0,
                           static_cast<std::int64_t>(a.size) - static_cast<std::int64_t>(b.size));
    }
    SPOOLD_CHECK(counter_add(txn, b.klass, b.state, -1, -static_cast<std::int64_t>(b.size)));
    return counter_add(txn, a.klass, a.state, 1, static_cast<std::int64_t>(a.size));
}

Status Indexes::clear(lmdb::WriteTxn& txn) const {
    for (const IndexSpec& index : kIndexes) {
        SPOOLD_CHECK(txn.clear(t_.*index.table));
    }
    SPOOLD_CHECK(txn.clear(t_.rcpt_gone)); // what it listed went with the recipient index
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

Result<std::vector<std::string>> Indexes::ready_domains(const lmdb::Txn& txn, ClassId klass,
                                                        std::string_view after,
                                                        std::size_t max) const {
    std::vector<std::string> out;
    if (klass >= kMaxClasses) {
        return out;
    }
    // Start past every key of `after` (class | after | 0 | id < class | after | 1), then jump
    // from each domain found to the first key past it: one seek per domain.
    std::string from(1, static_cast<char>(klass));
    if (!after.empty()) {
        from.append(after);
        from.push_back('\1');
    }
    while (out.size() < max) {
        std::optional<std::string> found;
        SPOOLD_CHECK(txn.scan(t_.ready_domain, from, [&](std::string_view k, std::string_view) {
            if (k.size() > 1 + kIdSize && static_cast<std::uint8_t>(k[0]) == klass) {
                found = std::string(k.substr(1, k.size() - 1 - kIdSize - 1));
            }
            return false;
        }));
        if (!found) {
            break;
        }
        from = std::string(1, static_cast<char>(klass)) + *found + '\1';
        out.push_back(std::move(*found));
    }
    return out;
}

Result<std::vector<QueueId>> Indexes::ready_in_domain(const lmdb::Txn& txn, ClassId klass,
                                                      std::string_view domain, QueueId after,
                                                      std::size_t max) const {
    std::vector<QueueId> out;
    if (klass >= kMaxClasses || after.value == std::numeric_limits<std::uint64_t>::max()) {
        return out;
    }
    const std::string first = record::ready_domain_key(klass, domain, QueueId{after.value + 1});
    const std::string_view prefix(first.data(), first.size() - kIdSize);
    SPOOLD_CHECK(txn.scan(t_.ready_domain, first, [&](std::string_view k, std::string_view) {
        if (out.size() >= max || k.size() != prefix.size() + kIdSize || !k.starts_with(prefix)) {
            return false;
        }
        out.push_back(record::id_at_end(k));
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

Result<std::vector<QueueId>> Indexes::dsns_after(const lmdb::Txn& txn, QueueId after,
                                                 std::size_t max) const {
    std::vector<QueueId> out;
    if (after.value == std::numeric_limits<std::uint64_t>::max()) {
        return out;
    }
    SPOOLD_CHECK(txn.scan(t_.dsn, record::msg_key(QueueId{after.value + 1}),
                          [&](std::string_view k, std::string_view) {
                              if (out.size() >= max) {
                                  return false;
                              }
                              if (k.size() == kIdSize) {
                                  out.push_back(record::id_at(k, 0));
                              }
                              return true;
                          }));
    return out;
}

Result<IdPage> Indexes::recipient_page(const lmdb::Txn& txn, std::string_view prefix,
                                       std::string_view resume, std::size_t max) const {
    IdPage page;
    const std::string from = resume.empty() ? std::string(prefix) : std::string(resume);
    bool more = false;
    Status inner;
    SPOOLD_CHECK(txn.scan(t_.rcpt, from, [&](std::string_view k, std::string_view) {
        if (!k.starts_with(prefix)) {
            return false;
        }
        if (k == resume || k.size() < prefix.size() + kIdSize) {
            return true; // where the last page stopped; or malformed
        }
        const QueueId id = record::id_at_end(k);
        auto gone = removed(txn, id);
        if (!gone) {
            inner = tl::unexpected(gone.error());
            return false;
        }
        if (*gone) {
            return true; // left for the sweep
        }
        if (page.ids.size() >= max) {
            more = true;
            return false;
        }
        page.ids.push_back(id);
        page.resume = std::string(k);
        return true;
    }));
    SPOOLD_CHECK(inner);
    if (!more) {
        page.resume.clear();
    }
    return page;
}

Result<std::vector<QueueId>> Indexes::recipient_after(const lmdb::Txn& txn,
                                                      std::string_view address, QueueId after,
                                                      std::size_t max) const {
    // One address's keys differ only in the id: the key of `after` is where to resume.
    const std::string prefix = record::rcpt_prefix(address);
    SPOOLD_TRY(page, recipient_page(txn, prefix, prefix + record::msg_key(after), max));
    return std::move(page.ids);
}

Status Indexes::check_record(const lmdb::Txn& txn, const MessageFacts& f,
                             const Problem& problem) const {
    const IndexFacts& h = f.header;
    Keys want;
    for (const IndexSpec& index : kIndexes) {
        want.clear();
        index.entries(f, want);
        if (index.probe != nullptr) {
            const std::string look = *index.probe(h);
            SPOOLD_TRY(found, txn.get(t_.*index.table, look));
            const bool present = found.has_value();
            if (present != !want.empty()) {
                problem(fmt::format("record {}: {}", h.id.text(),
                                    index.record_problem(h, look, present)));
            }
            continue;
        }
        for (const std::string& key : want) {
            SPOOLD_TRY(found, txn.get(t_.*index.table, key));
            if (!found) {
                problem(
                    fmt::format("record {}: {}", h.id.text(), index.record_problem(h, key, false)));
            }
        }
    }
    return {};
}

Result<std::optional<EntryCursor>>
Indexes::check_entries(const lmdb::Txn& txn, const FactsOf& facts_of, const Problem& problem,
                       std::uint64_t& entries, const RecipientsOf& recipients_of,
                       const EntryCursor& from, std::size_t max) const {
    std::size_t seen = 0;
    Keys want;
    for (std::size_t i = from.index; i < std::size(kIndexes); ++i) {
        const IndexSpec& index = kIndexes[i];
        if (index.from_recipients && !recipients_of) {
            continue;
        }
        Status inner;
        std::optional<std::string> stopped_at;
        SPOOLD_CHECK(txn.scan(t_.*index.table, i == from.index ? from.key : std::string(),
                              [&](std::string_view k, std::string_view) {
                                  if (seen >= max) {
                                      stopped_at = std::string(k);
                                      return false;
                                  }
                                  ++seen;
                                  ++entries;
                                  if (!well_formed(index, k)) {
                                      problem(fmt::format("{} index: malformed key", index.name));
                                      return true;
                                  }
                                  const QueueId id = record::id_at_end(k);
                                  auto f = facts_of(id);
                                  if (!f) {
                                      inner = tl::unexpected(f.error());
                                      return false;
                                  }
                                  if (!*f && index.swept) {
                                      auto waits = awaits_sweep(txn, id, k);
                                      if (!waits) {
                                          inner = tl::unexpected(waits.error());
                                          return false;
                                      }
                                      if (*waits) {
                                          return true; // a removed message's, for the sweep
                                      }
                                  }
                                  if (!*f) {
                                      problem(fmt::format("{} index: {} has no record", index.name,
                                                          index.describe(k)));
                                      return true;
                                  }
                                  MessageFacts facts(**f);
                                  if (index.from_recipients) {
                                      auto r = recipients_of(id);
                                      if (!r) {
                                          inner = tl::unexpected(r.error());
                                          return false;
                                      }
                                      if (!*r) {
                                          return true; // undecodable: the record says so
                                      }
                                      facts.recipients = std::move(**r);
                                  }
                                  want.clear();
                                  index.entries(facts, want);
                                  if (std::find(want.begin(), want.end(), k) == want.end()) {
                                      problem(fmt::format("{} index: {} {}", index.name,
                                                          index.describe(k),
                                                          index.disagreement(**f)));
                                  }
                                  return true;
                              }));
        SPOOLD_CHECK(inner);
        if (stopped_at) {
            return std::optional<EntryCursor>{EntryCursor{i, std::move(*stopped_at)}};
        }
    }
    return std::optional<EntryCursor>{};
}

void Indexes::digest_record(const MessageFacts& f, IndexDigest& d) {
    Keys want;
    for (std::size_t i = 0; i < kNumIndexes; ++i) {
        want.clear();
        kIndexes[i].entries(f, want);
        for (const std::string& key : want) {
            ++d.count[i];
            d.sum[i] += key_hash(key);
        }
    }
}

Result<std::optional<EntryCursor>> Indexes::digest_entries(const lmdb::Txn& txn, IndexDigest& d,
                                                           const EntryCursor& from,
                                                           std::size_t max) const {
    std::size_t seen = 0;
    for (std::size_t i = from.index; i < kNumIndexes; ++i) {
        std::optional<std::string> stopped_at;
        SPOOLD_CHECK(txn.scan(t_.*kIndexes[i].table, i == from.index ? from.key : std::string(),
                              [&](std::string_view k, std::string_view) {
                                  if (seen >= max) {
                                      stopped_at = std::string(k);
                                      return false;
                                  }
                                  ++seen;
                                  ++d.count[i];
                                  d.sum[i] += key_hash(k);
                                  return true;
                              }));
        if (stopped_at) {
            return std::optional<EntryCursor>{EntryCursor{i, std::move(*stopped_at)}};
        }
    }
    return std::optional<EntryCursor>{};
}

Result<std::optional<std::string>> Indexes::digest_removed(const lmdb::Txn& txn, IndexDigest& d,
                                                           std::string_view from,
                                                           std::size_t max) const {
    std::optional<std::string> stopped_at;
    if (t_.rcpt_gone == kMissingTable) {
        return stopped_at;
    }
    std::size_t seen = 0;
    Keys keys;
    SPOOLD_CHECK(txn.scan(t_.rcpt_gone, from, [&](std::string_view k, std::string_view v) {
        if (seen >= max) {
            stopped_at = std::string(k);
            return false;
        }
        ++seen;
        keys.clear();
        // A malformed list's keys before the fault count; the digests then differ and the
        // lookups name the entries left over.
        static_cast<void>(record::read_key_list(v, keys));
        for (const std::string& key : keys) {
            ++d.count[kSweptIndex];
            d.sum[kSweptIndex] += key_hash(key);
        }
        return true;
    }));
    return stopped_at;
}

Result<std::uint64_t> Indexes::removed_pending(const lmdb::Txn& txn) const {
    if (t_.rcpt_gone == kMissingTable) {
        return std::uint64_t{0};
    }
    SPOOLD_TRY(st, txn.stat(t_.rcpt_gone));
    return static_cast<std::uint64_t>(st.entries);
}

Result<std::size_t> Indexes::sweep(lmdb::WriteTxn& txn, std::size_t max,
                                   std::size_t max_keys) const {
    std::vector<std::string> ids;
    Keys keys;
    SPOOLD_CHECK(txn.scan(t_.rcpt_gone, {}, [&](std::string_view k, std::string_view v) {
        if (ids.size() >= max) {
            return false;
        }
        const std::size_t before = keys.size();
        // A malformed list: its keys before the fault go with it; check --repair finds the rest.
        static_cast<void>(record::read_key_list(v, keys));
        if (!ids.empty() && keys.size() > max_keys) {
            keys.resize(before);
            return false;
        }
        ids.emplace_back(k);
        return true;
    }));
    // In key order: consecutive deletes share leaf pages, so a sweep dirties each page once.
    std::sort(keys.begin(), keys.end());
    for (const std::string& key : keys) {
        SPOOLD_CHECK(txn.del(t_.rcpt, key));
    }
    for (const std::string& id : ids) {
        SPOOLD_CHECK(txn.del(t_.rcpt_gone, id));
    }
    return ids.size();
}

Result<bool> Indexes::removed(const lmdb::Txn& txn, QueueId id) const {
    if (t_.rcpt_gone == kMissingTable) {
        return false;
    }
    SPOOLD_TRY(found, txn.get(t_.rcpt_gone, record::msg_key(id)));
    return found.has_value();
}

Result<bool> Indexes::awaits_sweep(const lmdb::Txn& txn, QueueId id, std::string_view key) const {
    if (t_.rcpt_gone == kMissingTable) {
        return false;
    }
    SPOOLD_TRY(found, txn.get(t_.rcpt_gone, record::msg_key(id)));
    if (!found) {
        return false;
    }
    Keys keys;
    static_cast<void>(record::read_key_list(*found, keys));
    return std::find(keys.begin(), keys.end(), key) != keys.end();
}

Status Indexes::sweep_id(lmdb::WriteTxn& txn, QueueId id) const {
    if (t_.rcpt_gone == kMissingTable) {
        return {};
    }
    const std::string gone_key = record::msg_key(id);
    SPOOLD_TRY(found, txn.get(t_.rcpt_gone, gone_key));
    if (!found) {
        return {};
    }
    Keys keys;
    static_cast<void>(record::read_key_list(*found, keys)); // a view: read before the deletes
    for (const std::string& key : keys) {
        SPOOLD_CHECK(txn.del(t_.rcpt, key));
    }
    SPOOLD_CHECK(txn.del(t_.rcpt_gone, gone_key));
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
