// Message bodies as chunks in the `body` table under a writer-assigned body ref: assigning
// refs, writing, reading in pieces, sizing and deleting. Knows nothing of envelopes, indexes
// or staging (which chunks belong to which message is the caller's business).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

#include "common/result.hpp"
#include "spool/lmdb/lmdb.hpp"
#include "spool/spool.hpp"
#include "spool/tables.hpp"

namespace spoold::spool {

// Staged bodies are written from this chunk number on: the numbers below it are left for
// the head an enqueue puts in front of them (NewMessage::head). Readers go by key order,
// so a body's chunk numbers need not be contiguous.
inline constexpr std::uint32_t kStagedFirstChunk = 1U << 16U;

class Bodies {
public:
    // `chunk_bytes` > 0: the most bytes one chunk holds (ARCHITECTURE.md, "Spool layout").
    Bodies(const Tables& tables, std::size_t chunk_bytes);

    // The next body ref, from a counter in `meta` updated in the same txn: another process
    // (spoolctl) writing the same spool sees it, and an aborted batch leaves no trace.
    Result<std::uint64_t> new_ref(lmdb::WriteTxn& txn) const;
    // Writes `data` as chunks numbered from `first`; returns the next chunk number.
    Result<std::uint32_t> put(lmdb::WriteTxn& txn, std::uint64_t ref, std::uint32_t first,
                              std::string_view data) const;
    Status erase(lmdb::WriteTxn& txn, std::uint64_t ref) const;
    // How many chunks put() makes of `bytes`.
    std::uint64_t chunks_for(std::uint64_t bytes) const {
        return (bytes + chunk_bytes_ - 1) / chunk_bytes_;
    }

    // Up to max_bytes (at least one chunk) starting at chunk `from`.
    Result<BodyPiece> read(const lmdb::Txn& txn, std::uint64_t ref, std::uint32_t from,
                           std::size_t max_bytes) const;
    // The bytes all chunks of the body hold.
    Result<std::uint64_t> stored_bytes(const lmdb::Txn& txn, std::uint64_t ref) const;

private:
    using ChunkFn = std::function<bool(std::string_view key, std::string_view data)>;
    // The chunks of one body from chunk `from` on, in order, until fn returns false.
    Status scan(const lmdb::Txn& txn, std::uint64_t ref, std::uint32_t from,
                const ChunkFn& fn) const;

    Tables t_;
    std::size_t chunk_bytes_;
};

} // namespace spoold::spool
