#include "tests/support/powercut_fs/fuse_ops.hpp"

#include <cerrno>
#include <fcntl.h>
#include <string>
#include <vector>

namespace powercut {
namespace {

// Every change goes through this kernel, so its caches never go stale within a mount
// (a cut ends the mount); a second is plenty.
constexpr double kCacheSeconds = 1.0;

Mount& mount(fuse_req_t req) { return *static_cast<Mount*>(fuse_req_userdata(req)); }
Volume& volume(fuse_req_t req) { return mount(req).volume; }

void reply_entry(fuse_req_t req, int err, const struct stat& st) {
    if (err != 0) {
        fuse_reply_err(req, err);
        return;
    }
    fuse_entry_param e{};
    e.ino = st.st_ino;
    e.attr = st;
    e.attr_timeout = kCacheSeconds;
    e.entry_timeout = kCacheSeconds;
    fuse_reply_entry(req, &e);
}

void on_init(void* /*userdata*/, fuse_conn_info* conn) {
    // Write-through: a write() returns only after this process has the data, so no page
    // of the kernel's cache can hold anything the cut does not see. mmap reads stay
    // cached (no direct_io), and the cache stays valid without re-reading on mtime.
    conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_AUTO_INVAL_DATA);
}

void on_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    struct stat st {};
    reply_entry(req, volume(req).lookup(parent, name, st), st);
}

void on_forget(fuse_req_t req, fuse_ino_t /*ino*/, uint64_t /*nlookup*/) {
    // Inodes live until the next cut or unmount drops the unreachable ones.
    fuse_reply_none(req);
}

void on_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* /*fi*/) {
    struct stat st {};
    if (const int err = volume(req).getattr(ino, st); err != 0) {
        fuse_reply_err(req, err);
        return;
    }
    fuse_reply_attr(req, &st, kCacheSeconds);
}

timespec time_of(const struct stat& attr, bool now, bool atime) {
    if (now) {
        return wall_clock_now();
    }
    return atime ? attr.st_atim : attr.st_mtim;
}

void on_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                fuse_file_info* /*fi*/) {
    SetAttr change;
    if ((to_set & FUSE_SET_ATTR_MODE) != 0) {
        change.mode = attr->st_mode;
    }
    if ((to_set & FUSE_SET_ATTR_UID) != 0) {
        change.uid = attr->st_uid;
    }
    if ((to_set & FUSE_SET_ATTR_GID) != 0) {
        change.gid = attr->st_gid;
    }
    if ((to_set & FUSE_SET_ATTR_SIZE) != 0) {
        change.size = static_cast<std::uint64_t>(attr->st_size);
    }
    if ((to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) != 0) {
        change.atime = time_of(*attr, (to_set & FUSE_SET_ATTR_ATIME_NOW) != 0, true);
    }
    if ((to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) != 0) {
        change.mtime = time_of(*attr, (to_set & FUSE_SET_ATTR_MTIME_NOW) != 0, false);
    }
    struct stat st {};
    if (const int err = volume(req).setattr(ino, change, st); err != 0) {
        fuse_reply_err(req, err);
        return;
    }
    fuse_reply_attr(req, &st, kCacheSeconds);
}

void on_mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
    const fuse_ctx* ctx = fuse_req_ctx(req);
    struct stat st {};
    reply_entry(req, volume(req).mkdir(parent, name, mode, ctx->uid, ctx->gid, st), st);
}

void on_mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t /*rdev*/) {
    if (!S_ISREG(mode)) {
        fuse_reply_err(req, EPERM); // regular files and directories only
        return;
    }
    const fuse_ctx* ctx = fuse_req_ctx(req);
    struct stat st {};
    reply_entry(req, volume(req).create(parent, name, mode, ctx->uid, ctx->gid, st), st);
}

void on_unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
    fuse_reply_err(req, volume(req).unlink(parent, name));
}

void on_rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
    fuse_reply_err(req, volume(req).rmdir(parent, name));
}

void on_rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
               const char* new_name, unsigned int flags) {
    if ((flags & ~RENAME_NOREPLACE) != 0) {
        fuse_reply_err(req, EINVAL); // no RENAME_EXCHANGE or WHITEOUT
        return;
    }
    fuse_reply_err(req, volume(req).rename(parent, name, new_parent, new_name,
                                           (flags & RENAME_NOREPLACE) != 0));
}

void on_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char* new_name) {
    struct stat st {};
    reply_entry(req, volume(req).link(ino, new_parent, new_name, st), st);
}

// The handle carries the open flags, so write() knows O_SYNC / O_DSYNC.
void prepare_handle(fuse_file_info* fi) {
    fi->fh = static_cast<std::uint64_t>(static_cast<unsigned>(fi->flags));
    fi->direct_io = 0;
    fi->keep_cache = 1;
}

void on_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    if (const int err = volume(req).open_file(ino); err != 0) {
        fuse_reply_err(req, err);
        return;
    }
    prepare_handle(fi);
    if (fuse_reply_open(req, fi) != 0) {
        volume(req).close_file(ino);
    }
}

void on_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
               fuse_file_info* fi) {
    const fuse_ctx* ctx = fuse_req_ctx(req);
    Volume& v = volume(req);
    struct stat st {};
    if (const int err = v.create(parent, name, mode, ctx->uid, ctx->gid, st); err != 0) {
        fuse_reply_err(req, err);
        return;
    }
    if (const int err = v.open_file(st.st_ino); err != 0) {
        fuse_reply_err(req, err);
        return;
    }
    prepare_handle(fi);
    fuse_entry_param e{};
    e.ino = st.st_ino;
    e.attr = st;
    e.attr_timeout = kCacheSeconds;
    e.entry_timeout = kCacheSeconds;
    if (fuse_reply_create(req, &e, fi) != 0) {
        v.close_file(st.st_ino);
    }
}

void on_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* /*fi*/) {
    std::string data;
    if (const int err = volume(req).read(ino, static_cast<std::uint64_t>(off), size, data);
        err != 0) {
        fuse_reply_err(req, err);
        return;
    }
    fuse_reply_buf(req, data.data(), data.size());
}

void on_write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
              fuse_file_info* fi) {
    Volume& v = volume(req);
    if (const int err = v.write(ino, static_cast<std::uint64_t>(off), buf, size); err != 0) {
        fuse_reply_err(req, err);
        return;
    }
    // O_SYNC and O_DSYNC writes (LMDB's meta page) are durable when write() returns.
    // The kernel follows them with an fsync as well; this does not rely on it.
    if ((static_cast<int>(fi->fh) & O_DSYNC) != 0) {
        (void)v.fsync_file(ino);
    }
    fuse_reply_write(req, size);
}

void on_flush(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* /*fi*/) {
    fuse_reply_err(req, 0); // close() is not fsync()
}

void on_release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* /*fi*/) {
    volume(req).close_file(ino);
    fuse_reply_err(req, 0);
}

void on_fsync(fuse_req_t req, fuse_ino_t ino, int /*datasync*/, fuse_file_info* /*fi*/) {
    fuse_reply_err(req, volume(req).fsync_file(ino));
}

void on_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    std::vector<DirEntry> entries;
    if (const int err = volume(req).list(ino, entries); err != 0) {
        fuse_reply_err(req, err);
        return;
    }
    Mount& m = mount(req);
    fi->fh = m.next_listing++;
    m.listings.emplace(fi->fh, std::move(entries));
    if (fuse_reply_open(req, fi) != 0) {
        m.listings.erase(fi->fh);
    }
}

void on_readdir(fuse_req_t req, fuse_ino_t /*ino*/, size_t size, off_t off, fuse_file_info* fi) {
    const auto it = mount(req).listings.find(fi->fh);
    if (it == mount(req).listings.end()) {
        fuse_reply_err(req, EBADF);
        return;
    }
    const std::vector<DirEntry>& entries = it->second;
    std::string buf(size, '\0');
    std::size_t used = 0;
    for (auto i = static_cast<std::size_t>(off); i < entries.size(); ++i) {
        const DirEntry& e = entries[i];
        struct stat st {};
        st.st_ino = e.ino;
        st.st_mode = e.mode;
        const std::size_t need = fuse_add_direntry(req, buf.data() + used, size - used,
                                                   e.name.c_str(), &st, static_cast<off_t>(i + 1));
        if (need > size - used) {
            break;
        }
        used += need;
    }
    fuse_reply_buf(req, buf.data(), used);
}

void on_releasedir(fuse_req_t req, fuse_ino_t /*ino*/, fuse_file_info* fi) {
    mount(req).listings.erase(fi->fh);
    fuse_reply_err(req, 0);
}

void on_fsyncdir(fuse_req_t req, fuse_ino_t ino, int /*datasync*/, fuse_file_info* /*fi*/) {
    fuse_reply_err(req, volume(req).fsync_dir(ino));
}

void on_statfs(fuse_req_t req, fuse_ino_t /*ino*/) {
    struct statvfs st {};
    if (const int err = volume(req).statfs(st); err != 0) {
        fuse_reply_err(req, err);
        return;
    }
    fuse_reply_statfs(req, &st);
}

} // namespace

fuse_lowlevel_ops make_ops() {
    fuse_lowlevel_ops ops{};
    ops.init = on_init;
    ops.lookup = on_lookup;
    ops.forget = on_forget;
    ops.getattr = on_getattr;
    ops.setattr = on_setattr;
    ops.mknod = on_mknod;
    ops.mkdir = on_mkdir;
    ops.unlink = on_unlink;
    ops.rmdir = on_rmdir;
    ops.rename = on_rename;
    ops.link = on_link;
    ops.open = on_open;
    ops.create = on_create;
    ops.read = on_read;
    ops.write = on_write;
    ops.flush = on_flush;
    ops.release = on_release;
    ops.fsync = on_fsync;
    ops.opendir = on_opendir;
    ops.readdir = on_readdir;
    ops.releasedir = on_releasedir;
    ops.fsyncdir = on_fsyncdir;
    ops.statfs = on_statfs;
    return ops;
}

} // namespace powercut
