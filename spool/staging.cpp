#include "spool/staging.hpp"

#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/log.hpp"
#include "spool/record.hpp"

namespace spoold::spool {
namespace {

// The staging value: last append time | next chunk number | bytes staged | body ref.
struct StagingInfo {
    UnixMillis touched = 0;
    std::uint32_t next_chunk = 0;
    std::uint64_t bytes = 0;
    std::uint64_t body_ref = 0;
};
constexpr std::size_t kStagingValueSize = 8 + 4 + 8 + 8;
constexpr std::size_t kIdKeySize = 8;

std::string encode_staging(const StagingInfo& s) {
    return record::be64(static_cast<std::uint64_t>(s.touched)) + record::be32(s.next_chunk) +
           record::be64(s.bytes) + record::be64(s.body_ref);
}

std::optional<StagingInfo> decode_staging(std::string_view v) {
    if (v.size() != kStagingValueSize) {
        return std::nullopt;
    }
    return StagingInfo{static_cast<UnixMillis>(record::read_be64(v)),
                       record::read_be32(v.substr(8)), record::read_be64(v.substr(12)),
                       record::read_be64(v.substr(20))};
}

Error bad_staging(QueueId id) {
    return Error{ErrorKind::kCorrupt, fmt::format("{}: bad staging record", id.text())};
}

} // namespace

Status Staging::append(lmdb::WriteTxn& txn, QueueId id, std::string_view data) const {
    if (id.value == 0) {
        return fail(ErrorKind::kInvalid, "staging without an id");
    }
    SPOOLD_TRY(exists, store_.record(txn, id));
    if (exists) {
        return fail(ErrorKind::kInternal,
                    fmt::format("{}: staging for an id already in the spool", id.text()));
    }
    SPOOLD_TRY(raw, txn.get(t_.staging, record::msg_key(id)));
    StagingInfo info;
    if (raw) {
        auto decoded = decode_staging(*raw);
        if (!decoded) {
            return tl::unexpected(bad_staging(id));
        }
        info = *decoded;
    } else {
        SPOOLD_TRY(fresh, bodies_.new_ref(txn));
        info.body_ref = fresh;
        info.next_chunk = kStagedFirstChunk;
    }
    SPOOLD_TRY(next, bodies_.put(txn, info.body_ref, info.next_chunk, data));
    info.next_chunk = next;
    info.bytes += data.size();
    info.touched = clock_.now_ms();
    SPOOLD_CHECK(txn.put(t_.staging, record::msg_key(id), encode_staging(info)));
    return {};
}

Status Staging::enqueue(lmdb::WriteTxn& txn, const NewMessage& msg) const {
    SPOOLD_CHECK(Store::validate_new(msg.envelope));
    const QueueId id = msg.envelope.id;
    SPOOLD_TRY(raw, txn.get(t_.staging, record::msg_key(id)));
    if (!raw) {
        return fail(
            ErrorKind::kNotFound,
            fmt::format("{}: nothing staged (discarded or collected as an orphan)", id.text()));
    }
    const auto info = decode_staging(*raw);
    if (!info) {
        return tl::unexpected(bad_staging(id));
    }
    SPOOLD_CHECK(store_.insert(txn, msg, BodyStart{info->body_ref, info->next_chunk, info->bytes}));
    SPOOLD_CHECK(txn.del(t_.staging, record::msg_key(id)));
    return {};
}

Status Staging::discard(lmdb::WriteTxn& txn, QueueId id) const {
    SPOOLD_TRY(raw, txn.get(t_.staging, record::msg_key(id)));
    if (!raw) {
        return {}; // discarding twice, or after collection, is not an error
    }
    const auto info = decode_staging(*raw);
    SPOOLD_CHECK(txn.del(t_.staging, record::msg_key(id)));
    return info ? bodies_.erase(txn, info->body_ref) : Status{};
}

Status Staging::collect(lmdb::WriteTxn& txn, UnixMillis older_than) const {
    std::vector<QueueId> orphans;
    SPOOLD_CHECK(txn.scan(t_.staging, {}, [&](std::string_view k, std::string_view v) {
        const auto info = decode_staging(v);
        if (k.size() == kIdKeySize && (!info || info->touched < older_than)) {
            orphans.push_back(record::id_at(k, 0));
        }
        return true;
    }));
    for (const QueueId id : orphans) {
        SPOOLD_CHECK(discard(txn, id));
    }
    if (!orphans.empty()) {
        log::info("event=spool_gc_staged removed={}", orphans.size());
    }
    return {};
}

Result<std::optional<QueueId>> Staging::newest(const lmdb::Txn& txn) const {
    SPOOLD_TRY(last, txn.last_key(t_.staging));
    if (!last || last->size() < kIdKeySize) {
        return std::optional<QueueId>{};
    }
    return std::optional<QueueId>{record::id_at(*last, 0)};
}

} // namespace spoold::spool
