// The power-cut volume's durable names between boots: each inode's type, mode, owner and
// mtime, and each directory's durable entries, in BACKING/manifest. File data is not
// here (BACKING/objects/<ino>); nothing here decides what is durable.
#pragma once

#include <string>

#include "tests/support/powercut_fs/inode.hpp"

namespace powercut {

// Writes the inodes and their durable entries (to a temporary name, fsynced, renamed,
// the directory fsynced). Returns 0 or an errno.
int save_manifest(const std::string& backing, Ino next_ino, const InodeTable& inodes);

// Reads what save_manifest wrote into `inodes` (entries and durable entries alike); no
// manifest yet gives the root directory alone. Returns 0, EINVAL for a damaged one.
int load_manifest(const std::string& backing, Ino& next_ino, InodeTable& inodes);

} // namespace powercut
