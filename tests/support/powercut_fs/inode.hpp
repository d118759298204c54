// One inode of the power-cut filesystem as the volume keeps it: attributes, a
// directory's current and durable entries, a file's unsynced writes. Plain data; the
// rules that change it are Volume's.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <time.h>

#include "tests/support/powercut_fs/file_journal.hpp"

namespace powercut {

using Ino = std::uint64_t;
constexpr Ino kRootIno = 1;

struct Inode {
    Ino ino = 0;
    mode_t mode = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    timespec atime{};
    timespec mtime{};
    timespec ctime{};
    std::uint64_t size = 0;
    nlink_t nlink = 0;
    Ino parent = 0; // directories: where the current tree holds them
    std::map<std::string, Ino, std::less<>> entries;
    std::map<std::string, Ino, std::less<>> durable;
    FileJournal journal;
    int fd = -1; // the backing object, open while a handle is (or briefly for a cut)
    int opens = 0;

    bool is_dir() const { return S_ISDIR(mode); }
};

using InodeTable = std::map<Ino, std::unique_ptr<Inode>>;

// The time stamps inodes carry.
inline timespec wall_clock_now() {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return ts;
}

} // namespace powercut
