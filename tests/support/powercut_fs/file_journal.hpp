// The writes to one file since its last fsync, kept apart so a power cut can undo them:
// each entry holds what it wrote and the bytes it overwrote. Knows nothing of FUSE or of
// names; the file's bytes live in a backing file the caller owns.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace powercut {

struct CutStats {
    std::uint64_t files_cut = 0;      // files that had unsynced writes
    std::uint64_t pieces_dropped = 0; // sector pieces of unsynced writes thrown away
    std::uint64_t pieces_kept = 0;    // ... kept by a torn cut
    std::uint64_t entries_dropped = 0;
    std::uint64_t inodes_dropped = 0;
};

// pread until `len` bytes are read or the file ends (`out` holds what was read).
// Returns 0 or an errno.
int read_at(int fd, std::string& out, std::size_t len, std::uint64_t offset);

class FileJournal {
public:
    // Writes `data` at `offset` into the file `fd` (whose size is `size`), recording
    // what it overwrote. Returns 0 or an errno.
    int write(int fd, std::uint64_t size, std::uint64_t offset, const char* data, std::size_t len);
    // Sets the file's size, recording the bytes a shrink cuts off. Returns 0 or an errno.
    int truncate(int fd, std::uint64_t size, std::uint64_t new_size);

    // fsync/fdatasync: everything written so far is durable.
    void sync() { entries_.clear(); }
    bool empty() const { return entries_.empty(); }

    // The power cut: puts the file back as it was at the last sync, then, when `rng` is
    // given, writes again a random subset of the unsynced writes cut into pieces at
    // `sector` boundaries (the subset is a random-length prefix of a random permutation;
    // kept pieces are applied in the order they were written, so a later write wins
    // where two overlap). Returns 0 or an errno; the journal is empty afterwards.
    int cut(int fd, std::mt19937_64* rng, std::uint64_t sector, CutStats& stats);

private:
    struct Entry {
        std::uint64_t offset = 0;
        std::string data;     // what a write wrote; empty for a size change
        std::string old_data; // the bytes it replaced (within the old size)
        std::uint64_t old_size = 0;
        bool is_truncate = false;
        std::uint64_t new_size = 0; // for a size change
    };
    std::vector<Entry> entries_;
};

} // namespace powercut
