#include "spool/lmdb/lmdb.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <lmdb.h>
#include <system_error>
#include <unistd.h>
#include <vector>

#include <fmt/format.h>

#include "common/log.hpp"

namespace spoold::spool::lmdb {
namespace {

MDB_val to_val(std::string_view s) {
    // LMDB takes a non-const pointer but does not write through it for keys and put data.
    return MDB_val{s.size(), const_cast<char*>(s.data())};
}

std::string_view to_view(const MDB_val& v) {
    return {static_cast<const char*>(v.mv_data), v.mv_size};
}

// Closes a cursor on every path out of a scan.
struct CursorGuard {
    MDB_cursor* cursor = nullptr;
    CursorGuard() = default;
    CursorGuard(const CursorGuard&) = delete;
    CursorGuard& operator=(const CursorGuard&) = delete;
    ~CursorGuard() {
        if (cursor != nullptr) {
            mdb_cursor_close(cursor);
        }
    }
};

// fsync of a directory: the entries in it (files and directories made in it) become
// durable. Nothing else makes them so; LMDB syncs data.mdb, never a directory.
Status sync_directory(const std::filesystem::path& dir) {
    const std::string path = dir.empty() ? std::string(".") : dir.string();
    const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return fail(ErrorKind::kIo, fmt::format("open {}: {}", path, std::strerror(errno)));
    }
    const int rc = ::fsync(fd);
    const int err = errno;
    ::close(fd);
    if (rc != 0) {
        return fail(ErrorKind::kIo, fmt::format("fsync {}: {}", path, std::strerror(err)));
    }
    return {};
}

// A new environment survives a power cut only once its data file's first pages, its
// name in the directory, and every directory made for it are durable, in that order.
Status make_durable(MDB_env* env, const std::filesystem::path& dir,
                    const std::vector<std::filesystem::path>& made) {
    if (const int rc = mdb_env_sync(env, 1); rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_env_sync"));
    }
    SPOOLD_CHECK(sync_directory(dir));
    for (const auto& d : made) {
        SPOOLD_CHECK(sync_directory(d.parent_path()));
    }
    return {};
}

} // namespace

Error to_error(int rc, std::string_view what) {
    if (rc == MDB_MAP_FULL) {
        return Error{ErrorKind::kSpoolFull, fmt::format("{}: {}", what, mdb_strerror(rc))};
    }
    if (rc == ENOSPC || rc == EDQUOT) {
        return Error{ErrorKind::kDiskFull, fmt::format("{}: {}", what, mdb_strerror(rc))};
    }
    return Error{ErrorKind::kIo, fmt::format("{}: {}", what, mdb_strerror(rc))};
}

Txn& Txn::operator=(Txn&& other) noexcept {
    if (this != &other) {
        abort_now();
        txn_ = other.txn_;
        other.txn_ = nullptr;
    }
    return *this;
}

Txn::~Txn() { abort_now(); }

void Txn::abort_now() {
    if (txn_ != nullptr) {
        mdb_txn_abort(txn_);
        txn_ = nullptr;
    }
}

Result<std::optional<std::string_view>> Txn::get(Dbi dbi, std::string_view key) const {
    MDB_val k = to_val(key);
    MDB_val v{};
    const int rc = mdb_get(txn_, dbi.handle, &k, &v);
    if (rc == MDB_NOTFOUND) {
        return std::optional<std::string_view>{};
    }
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_get"));
    }
    return std::optional<std::string_view>{to_view(v)};
}

Status Txn::scan(Dbi dbi, std::string_view from, const ScanFn& fn) const {
    CursorGuard guard;
    int rc = mdb_cursor_open(txn_, dbi.handle, &guard.cursor);
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_cursor_open"));
    }
    MDB_val k = to_val(from);
    MDB_val v{};
    rc = from.empty() ? mdb_cursor_get(guard.cursor, &k, &v, MDB_FIRST)
                      : mdb_cursor_get(guard.cursor, &k, &v, MDB_SET_RANGE);
    while (rc == 0) {
        if (!fn(to_view(k), to_view(v))) {
            return {};
        }
        rc = mdb_cursor_get(guard.cursor, &k, &v, MDB_NEXT);
    }
    if (rc != MDB_NOTFOUND) {
        return tl::unexpected(to_error(rc, "mdb_cursor_get"));
    }
    return {};
}

Result<std::optional<std::string>> Txn::last_key(Dbi dbi) const {
    CursorGuard guard;
    int rc = mdb_cursor_open(txn_, dbi.handle, &guard.cursor);
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_cursor_open"));
    }
    MDB_val k{};
    MDB_val v{};
    rc = mdb_cursor_get(guard.cursor, &k, &v, MDB_LAST);
    if (rc == MDB_NOTFOUND) {
        return std::optional<std::string>{};
    }
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_cursor_get"));
    }
    return std::optional<std::string>{std::string(to_view(k))};
}

Result<TableStat> Txn::stat(Dbi dbi) const {
    MDB_stat st{};
    const int rc = mdb_stat(txn_, dbi.handle, &st);
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_stat"));
    }
    return TableStat{st.ms_entries, st.ms_branch_pages, st.ms_leaf_pages, st.ms_overflow_pages,
                     st.ms_depth};
}

std::uint64_t Txn::id() const { return mdb_txn_id(txn_); }

Result<bool> WriteTxn::put(Dbi dbi, std::string_view key, std::string_view value, PutMode mode) {
    MDB_val k = to_val(key);
    MDB_val v = to_val(value);
    const unsigned int flags = mode == PutMode::kNoOverwrite ? MDB_NOOVERWRITE : 0U;
    const int rc = mdb_put(txn_, dbi.handle, &k, &v, flags);
    if (rc == MDB_KEYEXIST) {
        return false;
    }
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_put"));
    }
    return true;
}

Result<bool> WriteTxn::del(Dbi dbi, std::string_view key) {
    MDB_val k = to_val(key);
    const int rc = mdb_del(txn_, dbi.handle, &k, nullptr);
    if (rc == MDB_NOTFOUND) {
        return false;
    }
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_del"));
    }
    return true;
}

Status WriteTxn::clear(Dbi dbi) {
    const int rc = mdb_drop(txn_, dbi.handle, 0);
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_drop"));
    }
    return {};
}

Status WriteTxn::commit() {
    MDB_txn* txn = txn_;
    txn_ = nullptr; // mdb_txn_commit frees the txn even when it fails
    const int rc = mdb_txn_commit(txn);
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_txn_commit"));
    }
    return {};
}

Result<std::unique_ptr<Env>> Env::open(const EnvOptions& options) {
    std::error_code ec;
    std::vector<std::filesystem::path> made; // directories this call creates, innermost first
    if (!std::filesystem::is_directory(options.path, ec)) {
        if (!options.create || options.read_only) {
            return fail(ErrorKind::kIo, fmt::format("{}: not a directory", options.path));
        }
        for (auto p = std::filesystem::path(options.path).lexically_normal();
             !p.empty() && p.has_relative_path() && !std::filesystem::exists(p, ec);
             p = p.parent_path()) {
            made.push_back(p);
        }
        std::filesystem::create_directories(options.path, ec);
        if (ec) {
            return fail(ErrorKind::kIo, fmt::format("{}: {}", options.path, ec.message()));
        }
    }
    MDB_env* raw = nullptr;
    int rc = mdb_env_create(&raw);
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_env_create"));
    }
    // Owns `raw` from here so every early return closes it.
    std::unique_ptr<Env> env(new Env(raw, options.path, options.read_only));
    if ((rc = mdb_env_set_maxdbs(raw, options.max_tables)) != 0) {
        return tl::unexpected(to_error(rc, "mdb_env_set_maxdbs"));
    }
    if (options.map_size != 0 && (rc = mdb_env_set_mapsize(raw, options.map_size)) != 0) {
        return tl::unexpected(to_error(rc, "mdb_env_set_mapsize"));
    }
    // NOTLS: read txns are not tied to a thread, so any caller thread may read and a reader
    // slot is freed as soon as the txn ends. No WRITEMAP (SIGBUS on a full disk).
    unsigned int flags = MDB_NOTLS;
    if (options.read_only) {
        flags |= MDB_RDONLY;
    }
    constexpr mdb_mode_t kFileMode = 0640;
    rc = mdb_env_open(raw, options.path.c_str(), flags, kFileMode);
    if (rc != 0) {
        return tl::unexpected(to_error(rc, fmt::format("mdb_env_open {}", options.path)));
    }
    if (!options.read_only) {
        SPOOLD_CHECK(make_durable(raw, options.path, made));
    }
    int dead = 0;
    rc = mdb_reader_check(raw, &dead);
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_reader_check"));
    }
    if (dead > 0) {
        log::info("event=lmdb_reader_check path={} cleared={}", log::quote(options.path), dead);
    }
    return env;
}

Env::~Env() {
    if (env_ != nullptr) {
        mdb_env_close(env_);
    }
}

Result<Dbi> Env::table(const std::string& name, bool create) {
    MDB_txn* txn = nullptr;
    const bool write = create && !read_only_;
    int rc = mdb_txn_begin(env_, nullptr, write ? 0U : MDB_RDONLY, &txn);
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_txn_begin"));
    }
    MDB_dbi dbi = 0;
    rc = mdb_dbi_open(txn, name.c_str(), write ? MDB_CREATE : 0U, &dbi);
    if (rc != 0) {
        mdb_txn_abort(txn);
        if (rc == MDB_NOTFOUND) {
            return fail(ErrorKind::kIo, fmt::format("{}: no table {} (not a spool?)", path_, name));
        }
        return tl::unexpected(to_error(rc, fmt::format("mdb_dbi_open {}", name)));
    }
    // Commit (even a read txn): an aborted txn would close the new handle again.
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_txn_commit"));
    }
    return Dbi{dbi};
}

Result<ReadTxn> Env::begin_read() const {
    MDB_txn* txn = nullptr;
    const int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn);
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_txn_begin(read)"));
    }
    return ReadTxn(txn);
}

Result<WriteTxn> Env::begin_write() {
    if (read_only_) {
        return fail(ErrorKind::kInternal, "write transaction on a read-only environment");
    }
    MDB_txn* txn = nullptr;
    const int rc = mdb_txn_begin(env_, nullptr, 0, &txn);
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_txn_begin(write)"));
    }
    return WriteTxn(txn);
}

Result<EnvInfo> Env::info() const {
    MDB_envinfo info{};
    int rc = mdb_env_info(env_, &info);
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_env_info"));
    }
    MDB_stat st{};
    rc = mdb_env_stat(env_, &st);
    if (rc != 0) {
        return tl::unexpected(to_error(rc, "mdb_env_stat"));
    }
    return EnvInfo{info.me_mapsize, info.me_last_pgno, st.ms_psize, info.me_maxreaders,
                   info.me_numreaders};
}

} // namespace spoold::spool::lmdb
