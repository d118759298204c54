#include "tests/support/powercut_fs/volume.hpp"

#include "tests/support/powercut_fs/manifest.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <dirent.h>
#include <fcntl.h>
#include <random>
#include <set>
#include <unistd.h>

namespace powercut {

namespace {

constexpr mode_t kObjectMode = 0600;
constexpr std::size_t kMaxName = 255;

bool valid_name(std::string_view name) {
    return !name.empty() && name.size() <= kMaxName && name != "." && name != ".." &&
           name.find('/') == std::string_view::npos;
}

} // namespace

Volume::Volume(std::string backing) : backing_(std::move(backing)) {}

Volume::~Volume() {
    for (auto& [ino, node] : inodes_) {
        if (node->fd >= 0) {
            ::close(node->fd);
        }
    }
}

std::unique_ptr<Volume> Volume::open(const std::string& backing, std::string& error) {
    std::unique_ptr<Volume> v(new Volume(backing));
    if (const int err = v->load(); err != 0) {
        error = std::string("cannot load ") + backing + ": " + std::strerror(err);
        return nullptr;
    }
    return v;
}

std::string Volume::object_path(Ino ino) const {
    return backing_ + "/objects/" + std::to_string(ino);
}

Inode* Volume::find(Ino ino) const {
    const auto it = inodes_.find(ino);
    return it == inodes_.end() ? nullptr : it->second.get();
}

Inode* Volume::child(const Inode& dir, std::string_view name) const {
    const auto it = dir.entries.find(name);
    return it == dir.entries.end() ? nullptr : find(it->second);
}

Ino Volume::add_inode(mode_t mode, uid_t uid, gid_t gid) {
    auto node = std::make_unique<Inode>();
    node->ino = next_ino_++;
    node->mode = mode;
    node->uid = uid;
    node->gid = gid;
    node->atime = node->mtime = node->ctime = wall_clock_now();
    const Ino ino = node->ino;
    inodes_.emplace(ino, std::move(node));
    return ino;
}

// Runs `op(fd)` on file `node`'s backing object, open for the call or for as long as a
// handle keeps it open. Returns op's errno, or the open's.
template <typename Op> int Volume::on_backing(Inode& node, Op op) const {
    if (node.fd < 0) {
        node.fd = ::open(object_path(node.ino).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kObjectMode);
        if (node.fd < 0) {
            return errno;
        }
    }
    const int err = op(node.fd);
    release_fd(node);
    return err;
}

void Volume::release_fd(Inode& node) const {
    if (node.opens == 0 && node.fd >= 0) {
        ::close(node.fd);
        node.fd = -1;
    }
}

void Volume::fill(const Inode& node, struct stat& out) const {
    out = {};
    out.st_ino = node.ino;
    out.st_mode = node.mode;
    out.st_nlink = node.nlink;
    out.st_uid = node.uid;
    out.st_gid = node.gid;
    out.st_size = static_cast<off_t>(node.size);
    out.st_blksize = 4096;
    out.st_blocks = static_cast<blkcnt_t>((node.size + 511) / 512);
    out.st_atim = node.atime;
    out.st_mtim = node.mtime;
    out.st_ctim = node.ctime;
}

int Volume::lookup(Ino parent, std::string_view name, struct stat& out) const {
    const Inode* dir = find(parent);
    if (dir == nullptr) {
        return ENOENT;
    }
    if (!dir->is_dir()) {
        return ENOTDIR;
    }
    const Inode* node = child(*dir, name);
    if (node == nullptr) {
        return ENOENT;
    }
    fill(*node, out);
    return 0;
}

int Volume::getattr(Ino ino, struct stat& out) const {
    const Inode* node = find(ino);
    if (node == nullptr) {
        return ENOENT;
    }
    fill(*node, out);
    return 0;
}

int Volume::setattr(Ino ino, const SetAttr& change, struct stat& out) {
    Inode* node = find(ino);
    if (node == nullptr) {
        return ENOENT;
    }
    if (change.size) {
        if (node->is_dir()) {
            return EISDIR;
        }
        const int err = on_backing(
            *node, [&](int fd) { return node->journal.truncate(fd, node->size, *change.size); });
        if (err != 0) {
            return err;
        }
        node->size = *change.size;
        node->mtime = wall_clock_now();
    }
    if (change.mode) {
        node->mode = (node->mode & S_IFMT) | (*change.mode & ~S_IFMT);
    }
    if (change.uid) {
        node->uid = *change.uid;
    }
    if (change.gid) {
        node->gid = *change.gid;
    }
    if (change.atime) {
        node->atime = *change.atime;
    }
    if (change.mtime) {
        node->mtime = *change.mtime;
    }
    node->ctime = wall_clock_now();
    fill(*node, out);
    return 0;
}

// The directory `parent` when a new entry `name` may go into it, else null and an errno.
Inode* Volume::dir_for_new(Ino parent, std::string_view name, int& err) const {
    Inode* dir = find(parent);
    err = dir == nullptr                ? ENOENT
          : !dir->is_dir()              ? ENOTDIR
          : !valid_name(name)           ? EINVAL
          : dir->entries.contains(name) ? EEXIST
                                        : 0;
    return err == 0 ? dir : nullptr;
}

void Volume::add_entry(Inode& dir, std::string_view name, Inode& node) {
    dir.entries.emplace(std::string(name), node.ino);
    if (node.is_dir()) {
        node.parent = dir.ino;
        ++dir.nlink;
    } else {
        ++node.nlink;
    }
    dir.mtime = dir.ctime = node.ctime = wall_clock_now();
}

int Volume::mkdir(Ino parent, std::string_view name, mode_t mode, uid_t uid, gid_t gid,
                  struct stat& out) {
    int err = 0;
    Inode* dir = dir_for_new(parent, name, err);
    if (dir == nullptr) {
        return err;
    }
    Inode& node = *find(add_inode(S_IFDIR | (mode & ~S_IFMT), uid, gid));
    node.nlink = 2;
    add_entry(*dir, name, node);
    fill(node, out);
    return 0;
}

int Volume::create(Ino parent, std::string_view name, mode_t mode, uid_t uid, gid_t gid,
                   struct stat& out) {
    int err = 0;
    Inode* dir = dir_for_new(parent, name, err);
    if (dir == nullptr) {
        return err;
    }
    const Ino ino = add_inode(S_IFREG | (mode & ~S_IFMT), uid, gid);
    // A fresh object: an inode number is never reused, so nothing can be left in it.
    const int fd =
        ::open(object_path(ino).c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, kObjectMode);
    if (fd < 0) {
        err = errno;
        inodes_.erase(ino);
        return err;
    }
    ::close(fd);
    Inode& node = *find(ino);
    add_entry(*dir, name, node);
    fill(node, out);
    return 0;
}

int Volume::link(Ino ino, Ino parent, std::string_view name, struct stat& out) {
    Inode* node = find(ino);
    if (node == nullptr) {
        return ENOENT;
    }
    if (node->is_dir()) {
        return EPERM;
    }
    int err = 0;
    Inode* dir = dir_for_new(parent, name, err);
    if (dir == nullptr) {
        return err;
    }
    add_entry(*dir, name, *node);
    fill(*node, out);
    return 0;
}

void Volume::drop_link(Inode& parent, Inode& node) {
    if (node.is_dir()) {
        node.nlink = 0;
        --parent.nlink;
    } else {
        --node.nlink;
    }
    node.ctime = wall_clock_now();
}

int Volume::unlink(Ino parent, std::string_view name) { return remove(parent, name, false); }

int Volume::rmdir(Ino parent, std::string_view name) { return remove(parent, name, true); }

int Volume::remove(Ino parent, std::string_view name, bool dir_wanted) {
    Inode* dir = find(parent);
    Inode* node = dir == nullptr ? nullptr : child(*dir, name);
    if (node == nullptr) {
        return ENOENT;
    }
    if (node->is_dir() != dir_wanted) {
        return dir_wanted ? ENOTDIR : EISDIR;
    }
    if (dir_wanted && !node->entries.empty()) {
        return ENOTEMPTY;
    }
    dir->entries.erase(dir->entries.find(name));
    drop_link(*dir, *node);
    dir->mtime = dir->ctime = wall_clock_now();
    return 0;
}

int Volume::rename(Ino parent, std::string_view name, Ino new_parent, std::string_view new_name,
                   bool no_replace) {
    Inode* from = find(parent);
    Inode* to = find(new_parent);
    if (from == nullptr || to == nullptr) {
        return ENOENT;
    }
    if (!from->is_dir() || !to->is_dir()) {
        return ENOTDIR;
    }
    Inode* node = child(*from, name);
    if (node == nullptr) {
        return ENOENT;
    }
    if (!valid_name(new_name)) {
        return EINVAL;
    }
    Inode* target = child(*to, new_name);
    if (target == node) {
        return 0;
    }
    if (target != nullptr && no_replace) {
        return EEXIST;
    }
    if (node->is_dir()) {
        for (Ino up = new_parent; up != 0; up = find(up)->parent) {
            if (up == node->ino) {
                return EINVAL; // into its own subtree
            }
            if (up == kRootIno) {
                break;
            }
        }
    }
    if (target != nullptr) {
        if (node->is_dir() && !target->is_dir()) {
            return ENOTDIR;
        }
        if (!node->is_dir() && target->is_dir()) {
            return EISDIR;
        }
        if (target->is_dir() && !target->entries.empty()) {
            return ENOTEMPTY;
        }
        drop_link(*to, *target);
    }
    const Ino ino = node->ino;
    from->entries.erase(from->entries.find(name));
    to->entries.insert_or_assign(std::string(new_name), ino);
    if (node->is_dir()) {
        node->parent = new_parent;
        --from->nlink;
        ++to->nlink;
    }
    from->mtime = from->ctime = to->mtime = to->ctime = node->ctime = wall_clock_now();
    return 0;
}

int Volume::list(Ino dir_ino, std::vector<DirEntry>& out) const {
    const Inode* dir = find(dir_ino);
    if (dir == nullptr) {
        return ENOENT;
    }
    if (!dir->is_dir()) {
        return ENOTDIR;
    }
    out.clear();
    out.push_back(DirEntry{".", dir->ino, dir->mode});
    const Inode* up = find(dir->ino == kRootIno ? kRootIno : dir->parent);
    out.push_back(DirEntry{"..", up != nullptr ? up->ino : kRootIno, S_IFDIR});
    for (const auto& [name, ino] : dir->entries) {
        out.push_back(DirEntry{name, ino, find(ino)->mode});
    }
    return 0;
}

int Volume::open_file(Ino ino) {
    Inode* node = find(ino);
    if (node == nullptr) {
        return ENOENT;
    }
    if (node->is_dir()) {
        return EISDIR;
    }
    ++node->opens; // the backing object stays open from here to close_file()
    const int err = on_backing(*node, [](int) { return 0; });
    if (err != 0) {
        --node->opens;
    }
    return err;
}

void Volume::close_file(Ino ino) {
    if (Inode* node = find(ino); node != nullptr && node->opens > 0) {
        --node->opens;
        release_fd(*node);
    }
}

int Volume::read(Ino ino, std::uint64_t offset, std::size_t size, std::string& out) {
    Inode* node = find(ino);
    if (node == nullptr) {
        return ENOENT;
    }
    return on_backing(*node, [&](int fd) { return read_at(fd, out, size, offset); });
}

int Volume::write(Ino ino, std::uint64_t offset, const char* data, std::size_t len) {
    Inode* node = find(ino);
    if (node == nullptr) {
        return ENOENT;
    }
    const int err = on_backing(
        *node, [&](int fd) { return node->journal.write(fd, node->size, offset, data, len); });
    if (err != 0) {
        return err;
    }
    node->size = std::max<std::uint64_t>(node->size, offset + len);
    node->mtime = node->ctime = wall_clock_now();
    return 0;
}

int Volume::fsync_file(Ino ino) {
    Inode* node = find(ino);
    if (node == nullptr) {
        return ENOENT;
    }
    node->journal.sync();
    return 0;
}

int Volume::fsync_dir(Ino ino) {
    Inode* node = find(ino);
    if (node == nullptr) {
        return ENOENT;
    }
    if (!node->is_dir()) {
        return ENOTDIR;
    }
    node->durable = node->entries;
    return 0;
}

int Volume::statfs(struct statvfs& out) const {
    return ::statvfs(backing_.c_str(), &out) == 0 ? 0 : errno;
}

// Link counts and parents from the current entries, walking from the root. A directory
// reached a second time (a durable rename seen from both sides) keeps its first entry
// only, as fsck would; inodes never reached have nlink 0.
void Volume::relink_all() {
    for (auto& [ino, node] : inodes_) {
        node->nlink = node->is_dir() ? 2 : 0;
        node->parent = 0;
    }
    Inode& root = *find(kRootIno);
    root.parent = kRootIno;
    std::deque<Ino> todo{kRootIno};
    while (!todo.empty()) {
        Inode& dir = *find(todo.front());
        todo.pop_front();
        for (auto it = dir.entries.begin(); it != dir.entries.end();) {
            Inode* node = find(it->second);
            if (node == nullptr || (node->is_dir() && node->parent != 0)) {
                dir.durable.erase(it->first);
                it = dir.entries.erase(it);
                continue;
            }
            if (node->is_dir()) {
                node->parent = dir.ino;
                ++dir.nlink;
                todo.push_back(node->ino);
            } else {
                ++node->nlink;
            }
            ++it;
        }
    }
}

void Volume::collect_unreachable(CutStats* stats) {
    for (auto it = inodes_.begin(); it != inodes_.end();) {
        Inode& node = *it->second;
        const bool reached =
            node.ino == kRootIno || (node.is_dir() ? node.parent != 0 : node.nlink > 0);
        if (reached) {
            ++it;
            continue;
        }
        if (node.fd >= 0) {
            ::close(node.fd);
        }
        if (!node.is_dir()) {
            ::unlink(object_path(node.ino).c_str());
        }
        if (stats != nullptr) {
            ++stats->inodes_dropped;
        }
        it = inodes_.erase(it);
    }
}

int Volume::cut(std::optional<std::uint64_t> torn_seed, std::uint64_t sector, CutStats& stats) {
    std::optional<std::mt19937_64> rng;
    if (torn_seed) {
        rng.emplace(*torn_seed);
    }
    for (auto& [ino, node] : inodes_) {
        node->opens = 0; // the kernel's handles die with the mount
        if (node->is_dir()) {
            for (const auto& [name, child_ino] : node->entries) {
                const auto d = node->durable.find(name);
                stats.entries_dropped += (d == node->durable.end() || d->second != child_ino);
            }
            node->entries = node->durable;
        }
    }
    relink_all();
    collect_unreachable(&stats);
    for (auto& [ino, node] : inodes_) { // in inode order: a seed gives one outcome
        if (node->is_dir()) {
            continue;
        }
        Inode& file = *node;
        const int err = on_backing(file, [&](int fd) {
            if (const int e = file.journal.cut(fd, rng ? &*rng : nullptr, sector, stats); e != 0) {
                return e;
            }
            struct stat st {};
            if (::fstat(fd, &st) != 0) {
                return errno;
            }
            file.size = static_cast<std::uint64_t>(st.st_size);
            return 0;
        });
        if (err != 0) {
            return err;
        }
    }
    return save();
}

int Volume::shutdown() {
    for (auto& [ino, node] : inodes_) {
        node->opens = 0;
        node->journal.sync();
        node->durable = node->entries;
        release_fd(*node);
    }
    relink_all();
    collect_unreachable(nullptr);
    return save();
}

int Volume::save() const { return save_manifest(backing_, next_ino_, inodes_); }

int Volume::load() {
    const std::string objects = backing_ + "/objects";
    if (::mkdir(objects.c_str(), 0700) != 0 && errno != EEXIST) {
        return errno;
    }
    if (const int err = load_manifest(backing_, next_ino_, inodes_); err != 0) {
        return err;
    }
    for (auto& [ino, node] : inodes_) {
        if (!node->is_dir()) {
            struct stat st {};
            if (::stat(object_path(ino).c_str(), &st) == 0) {
                node->size = static_cast<std::uint64_t>(st.st_size);
            }
        }
    }
    relink_all();
    collect_unreachable(nullptr);
    // Objects the manifest does not name belong to files that never became durable.
    std::set<std::string> known;
    for (const auto& [ino, node] : inodes_) {
        known.insert(std::to_string(ino));
    }
    if (DIR* d = ::opendir(objects.c_str()); d != nullptr) {
        while (const dirent* e = ::readdir(d)) {
            const std::string name = e->d_name;
            if (name != "." && name != ".." && !known.contains(name)) {
                ::unlink((objects + "/" + name).c_str());
            }
        }
        ::closedir(d);
    }
    return 0;
}

} // namespace powercut
