// RAII wrapper over LMDB for the spool: environment, read and write transactions, named
// tables and cursor scans that cannot outlive their transaction. The only place that sees
// <lmdb.h>. It knows nothing of records or queues; no raw MDB_txn* escapes this wrapper.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"

struct MDB_env;
struct MDB_txn;

namespace spoold::spool::lmdb {

// LMDB return code -> our error: MAP_FULL is kSpoolFull, ENOSPC/EDQUOT kDiskFull, the rest
// kIo with mdb_strerror's text. `what` names the call for the log line.
Error to_error(int rc, std::string_view what);

// A table (named sub-database) handle; valid for the life of its Env.
struct Dbi {
    unsigned int handle = 0;
    friend bool operator==(Dbi, Dbi) = default;
};

struct EnvOptions {
    std::string path;             // directory holding data.mdb and lock.mdb
    std::uint64_t map_size = 0;   // upper limit of the data file; it grows only as used
    unsigned int max_tables = 16; // named sub-databases
    bool read_only = false;       // MDB_RDONLY: another process may be the writer
    bool create = true;           // create the directory when missing
};

struct EnvInfo {
    std::uint64_t map_size = 0;
    std::uint64_t last_page = 0; // highest page number in use (the file's high-water mark)
    std::uint64_t page_size = 0;
    std::uint32_t max_readers = 0;
    std::uint32_t num_readers = 0;
};

struct TableStat {
    std::uint64_t entries = 0;
    std::uint64_t branch_pages = 0;
    std::uint64_t leaf_pages = 0;
    std::uint64_t overflow_pages = 0;
    std::uint32_t depth = 0;
};

// Called for each entry in key order; return false to stop. Views are valid only during
// the call (they point into the map and die with the transaction).
using ScanFn = std::function<bool(std::string_view key, std::string_view value)>;

class Txn {
public:
    Txn(const Txn&) = delete;
    Txn& operator=(const Txn&) = delete;
    Txn(Txn&& other) noexcept : txn_(other.txn_) { other.txn_ = nullptr; }
    Txn& operator=(Txn&& other) noexcept;
    ~Txn();

    // Empty optional when the key is absent. The view is valid until the txn ends.
    Result<std::optional<std::string_view>> get(Dbi dbi, std::string_view key) const;
    // Entries with key >= from, in key order, until fn returns false.
    Status scan(Dbi dbi, std::string_view from, const ScanFn& fn) const;
    // The last entry's key (copied), or empty optional for an empty table.
    Result<std::optional<std::string>> last_key(Dbi dbi) const;
    Result<TableStat> stat(Dbi dbi) const;
    // LMDB's transaction id: for a read txn, the last committed write it sees. Two read txns
    // with the same id saw the same spool.
    std::uint64_t id() const;

protected:
    explicit Txn(MDB_txn* txn) : txn_(txn) {}
    void abort_now();
    MDB_txn* txn_ = nullptr;
    friend class Env;
};

class ReadTxn final : public Txn {
private:
    explicit ReadTxn(MDB_txn* txn) : Txn(txn) {}
    friend class Env;
};

// Aborted by the destructor unless commit() succeeded.
class WriteTxn final : public Txn {
public:
    enum class PutMode { kOverwrite, kNoOverwrite };
    // kNoOverwrite: returns false (and writes nothing) when the key exists.
    Result<bool> put(Dbi dbi, std::string_view key, std::string_view value,
                     PutMode mode = PutMode::kOverwrite);
    // Returns false when the key was absent.
    Result<bool> del(Dbi dbi, std::string_view key);
    // Removes every entry of the table (the table itself stays).
    Status clear(Dbi dbi);
    // Durable on return (default LMDB sync). The txn is finished either way.
    [[nodiscard]] Status commit();
    void abort() { abort_now(); }

private:
    explicit WriteTxn(MDB_txn* txn) : Txn(txn) {}
    friend class Env;
};

class Env {
public:
    // Opens (creates when allowed) the environment, runs mdb_reader_check to clear slots of
    // dead processes. Never MDB_WRITEMAP: a full disk must be an error, not SIGBUS.
    static Result<std::unique_ptr<Env>> open(const EnvOptions& options);
    ~Env();
    Env(const Env&) = delete;
    Env& operator=(const Env&) = delete;

    // Opens a named table; creates it when `create` (needs a writable env).
    Result<Dbi> table(const std::string& name, bool create);

    Result<ReadTxn> begin_read() const;
    // Blocks while another thread or process holds the write lock.
    Result<WriteTxn> begin_write();

    Result<EnvInfo> info() const;
    bool read_only() const { return read_only_; }
    const std::string& path() const { return path_; }

private:
    Env(MDB_env* env, std::string path, bool read_only)
        : env_(env), path_(std::move(path)), read_only_(read_only) {}
    MDB_env* env_ = nullptr;
    std::string path_;
    bool read_only_ = false;
};

} // namespace spoold::spool::lmdb
