// The power-cut filesystem's model: inodes, directory entries and file data in a backing
// directory, with what has not been fsynced kept apart so that cut() can throw it away.
// No FUSE here (fuse_ops.cpp maps requests onto it); single-threaded by design.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <vector>

#include "tests/support/powercut_fs/inode.hpp"

namespace powercut {

struct SetAttr {
    std::optional<mode_t> mode;
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
    std::optional<std::uint64_t> size;
    std::optional<timespec> atime;
    std::optional<timespec> mtime;
};

struct DirEntry {
    std::string name;
    Ino ino = 0;
    mode_t mode = 0;
};

// Durability model (strict POSIX, as ext4 promises no more):
// - a file's data and size written since its last fsync/fdatasync are unsynced;
// - a directory's entries (create, mkdir, link, unlink, rmdir, rename in or out) are
//   durable only once that directory is fsynced: fsync_dir() makes its current entries
//   its durable ones. A rename is durable at its destination once the destination is
//   fsynced, and gone from its source once the source is fsynced;
// - a cut restores every directory's durable entries and every file's synced data;
//   inodes no durable entry reaches are dropped. Metadata (mode, owner, times) is not
//   modelled: it survives as it is.
class Volume {
public:
    // Opens the volume kept in `backing` (an empty volume when it holds none yet).
    static std::unique_ptr<Volume> open(const std::string& backing, std::string& error);
    ~Volume();
    Volume(const Volume&) = delete;
    Volume& operator=(const Volume&) = delete;

    // Every function returns 0 or an errno value.
    int lookup(Ino parent, std::string_view name, struct stat& out) const;
    int getattr(Ino ino, struct stat& out) const;
    int setattr(Ino ino, const SetAttr& change, struct stat& out);
    int mkdir(Ino parent, std::string_view name, mode_t mode, uid_t uid, gid_t gid,
              struct stat& out);
    int create(Ino parent, std::string_view name, mode_t mode, uid_t uid, gid_t gid,
               struct stat& out);
    int link(Ino ino, Ino parent, std::string_view name, struct stat& out);
    int unlink(Ino parent, std::string_view name);
    int rmdir(Ino parent, std::string_view name);
    int rename(Ino parent, std::string_view name, Ino new_parent, std::string_view new_name,
               bool no_replace);
    int list(Ino dir, std::vector<DirEntry>& out) const;

    int open_file(Ino ino);
    void close_file(Ino ino);
    int read(Ino ino, std::uint64_t offset, std::size_t size, std::string& out);
    int write(Ino ino, std::uint64_t offset, const char* data, std::size_t len);
    int fsync_file(Ino ino);
    int fsync_dir(Ino ino);
    int statfs(struct statvfs& out) const;

    // The power cut: everything not durable is thrown away (with `torn_seed`, a seeded
    // random part of each file's unsynced writes is kept, cut at `sector` boundaries),
    // and the durable state is saved for the next mount.
    int cut(std::optional<std::uint64_t> torn_seed, std::uint64_t sector, CutStats& stats);
    // A clean unmount: everything becomes durable and is saved.
    int shutdown();

private:
    explicit Volume(std::string backing);
    int load();
    int save() const;
    Inode* find(Ino ino) const;
    Inode* child(const Inode& dir, std::string_view name) const;
    Inode* dir_for_new(Ino parent, std::string_view name, int& err) const;
    void add_entry(Inode& dir, std::string_view name, Inode& node);
    Ino add_inode(mode_t mode, uid_t uid, gid_t gid);
    template <typename Op> int on_backing(Inode& node, Op op) const;
    void release_fd(Inode& node) const;
    void fill(const Inode& node, struct stat& out) const;
    void drop_link(Inode& parent, Inode& node);
    int remove(Ino parent, std::string_view name, bool dir_wanted);
    void relink_all();
    void collect_unreachable(CutStats* stats);
    std::string object_path(Ino ino) const;

    std::string backing_;
    Ino next_ino_ = kRootIno + 1;
    InodeTable inodes_;
};

} // namespace powercut
