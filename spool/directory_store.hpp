// A small LMDB store for the recipient directory (address -> target, and target -> its
// aliases), kept apart from the spool's environment so a directory reload never competes
// with the queue. A rebuild fills a second table beside the live one and swaps them in one
// commit, so lookups go on while millions of entries load. It only stores: parsing the
// directory file and deciding acceptance is policy's job.
#pragma once

#include <cstdint>
#include <functional>
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
    // LMDB map size (directory.map_size): room for two tables of entries while one is rebuilt.
    std::uint64_t max_size_bytes = 4ULL << 30U;
    bool read_only = false;
};

// Entries written per transaction while a table is rebuilt.
inline constexpr std::size_t kDirectoryBuildBatch = 100'000;

// Thread-safe: each call is one LMDB transaction (or, for a rebuild, a series of them on the
// calling thread); rebuilds are serialised by LMDB's writer lock.
class DirectoryStore {
public:
    static Result<std::unique_ptr<DirectoryStore>> open(const DirectoryStoreOptions& options);
    ~DirectoryStore();
    DirectoryStore(const DirectoryStore&) = delete;
    DirectoryStore& operator=(const DirectoryStore&) = delete;

    // The next entry of a rebuild into key and target ("" for a mailbox); false at the end.
    using NextEntry = std::function<Result<bool>(std::string& key, std::string& target)>;
    // Builds a new table from `next` beside the live one, kDirectoryBuildBatch entries per
    // transaction, then makes it live in one durable commit together with `source` (what it
    // was built from, see source()). Keys and targets are lower-cased; the first of a key
    // given twice wins. Lookups answer from the old table until the swap. On any error the
    // old table stays live; kSpoolFull when the map is full.
    Status rebuild(const NextEntry& next, std::string_view source = {});
    // rebuild() from a list (tests, small directories).
    Status replace(std::vector<std::pair<std::string, std::string>> entries);
    // The key is lower-cased before the lookup.
    Result<std::optional<std::string>> lookup(std::string_view key);
    // The keys whose target is `target` (lower-cased): the aliases that deliver to it.
    Result<std::vector<std::string>> aliases_of(std::string_view target, std::size_t max);
    // What the live table was built from (rebuild's `source`); empty when nothing is live.
    Result<std::string> source();
    Result<std::uint64_t> size();

private:
    struct Tables;
    DirectoryStore(std::unique_ptr<lmdb::Env> env, std::unique_ptr<Tables> tables);
    std::unique_ptr<lmdb::Env> env_;
    std::unique_ptr<Tables> t_;
};

} // namespace spoold::spool
