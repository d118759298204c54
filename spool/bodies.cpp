#include "spool/bodies.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "common/assert.hpp"
#include "spool/record.hpp"

namespace spoold::spool {
namespace {

constexpr std::string_view kBodyRefKey = "last_body_ref"; // in meta, big-endian u64
constexpr std::size_t kBodyKeySize = 12;                  // body ref | chunk

} // namespace

Bodies::Bodies(const Tables& tables, std::size_t chunk_bytes)
    : t_(tables), chunk_bytes_(chunk_bytes) {
    // put() advances by chunk_bytes_: zero would never end.
    SPOOLD_ASSERT(chunk_bytes_ > 0, "body chunks of zero bytes");
}

Result<std::uint64_t> Bodies::new_ref(lmdb::WriteTxn& txn) const {
    SPOOLD_TRY(cur, txn.get(t_.meta, kBodyRefKey));
    std::uint64_t last = 0;
    if (cur && cur->size() == 8) {
        last = record::read_be64(*cur);
    } else {
        // A spool without the counter: continue after the newest body chunk.
        SPOOLD_TRY(key, txn.last_key(t_.body));
        if (key && key->size() >= 8) {
            last = record::read_be64(*key);
        }
    }
    SPOOLD_CHECK(txn.put(t_.meta, kBodyRefKey, record::be64(last + 1)));
    return last + 1;
}

Result<std::uint32_t> Bodies::put(lmdb::WriteTxn& txn, std::uint64_t ref, std::uint32_t first,
                                  std::string_view data) const {
    std::uint32_t chunk = first;
    for (std::size_t pos = 0; pos < data.size(); pos += chunk_bytes_) {
        const std::size_t n = std::min(chunk_bytes_, data.size() - pos);
        SPOOLD_CHECK(txn.put(t_.body, record::body_key(ref, chunk), data.substr(pos, n)));
        ++chunk;
    }
    return chunk;
}

Status Bodies::scan(const lmdb::Txn& txn, std::uint64_t ref, std::uint32_t from,
                    const ChunkFn& fn) const {
    const std::string prefix = record::be64(ref);
    return txn.scan(t_.body, record::body_key(ref, from),
                    [&](std::string_view k, std::string_view v) {
                        if (k.size() != kBodyKeySize || k.substr(0, 8) != prefix) {
                            return false;
                        }
                        return fn(k, v);
                    });
}

Status Bodies::erase(lmdb::WriteTxn& txn, std::uint64_t ref) const {
    // Collected first: scan() holds a read cursor, the deletes come after it.
    std::vector<std::string> keys;
    SPOOLD_CHECK(scan(txn, ref, 0, [&](std::string_view k, std::string_view) {
        keys.emplace_back(k);
        return true;
    }));
    for (const std::string& k : keys) {
        SPOOLD_CHECK(txn.del(t_.body, k));
    }
    return {};
}

Result<BodyPiece> Bodies::read(const lmdb::Txn& txn, std::uint64_t ref, std::uint32_t from,
                               std::size_t max_bytes) const {
    BodyPiece piece;
    piece.next_chunk = from;
    piece.done = true;
    SPOOLD_CHECK(scan(txn, ref, from, [&](std::string_view k, std::string_view v) {
        // At least one chunk per call, so a small max_bytes still makes progress.
        if (!piece.data.empty() && piece.data.size() + v.size() > max_bytes) {
            piece.done = false;
            return false;
        }
        piece.data.append(v);
        piece.next_chunk = record::read_be32(k.substr(8)) + 1;
        return true;
    }));
    return piece;
}

Result<std::uint64_t> Bodies::stored_bytes(const lmdb::Txn& txn, std::uint64_t ref) const {
    std::uint64_t stored = 0;
    SPOOLD_CHECK(scan(txn, ref, 0, [&](std::string_view, std::string_view v) {
        stored += v.size();
        return true;
    }));
    return stored;
}

} // namespace spoold::spool
