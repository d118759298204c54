// A small LMDB store for the recipient directory (address -> target/alias info), kept apart
// from the spool's environment so a directory reload never competes with the queue.
// It only stores: parsing the directory files and deciding acceptance is policy's job.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"

namespace spoold::spool {

namespace lmdb {
class Env;
}

struct DirectoryStoreOptions {
    std::string path; // directory for its data.mdb, e.g. <spool>/directory
    std::uint64_t max_size_bytes = 1ULL << 30U; // LMDB map size
    bool read_only = false;
};

// Thread-safe: each call is one LMDB transaction; replace() is serialised by LMDB's writer lock.
class DirectoryStore {
public:
    static Result<std::unique_ptr<DirectoryStore>> open(const DirectoryStoreOptions& options);
    ~DirectoryStore();
    DirectoryStore(const DirectoryStore&) = delete;
    DirectoryStore& operator=(const DirectoryStore&) = delete;

    // Atomically replaces every entry (keys are lower-cased; a later duplicate key wins).
    // Durable on return. kSpoolFull when the map is full (the old entries stay).
    Status replace(std::vector<std::pair<std::string, std::string>> entries);
    // The key is lower-cased before the lookup.
    Result<std::optional<std::string>> lookup(std::string_view key);
    Result<std::uint64_t> size();

private:
    DirectoryStore(std::unique_ptr<lmdb::Env> env, unsigned int dbi);
    std::unique_ptr<lmdb::Env> env_;
    unsigned int dbi_;
};

} // namespace spoold::spool
