// The FUSE low-level operations of the power-cut filesystem: each request mapped onto the
// Volume. No durability logic here (volume.hpp has it) and no event loop (main.cpp).
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "tests/support/powercut_fs/volume.hpp"

#include <cstdint>
#include <map>
#include <vector>

namespace powercut {

// What the operations act on: fuse_session_new's userdata.
struct Mount {
    Volume& volume;
    // The listing of each open directory handle. Kept here, not behind a raw handle, so
    // handles the kernel never released before a cut die with the mount.
    std::map<std::uint64_t, std::vector<DirEntry>> listings;
    std::uint64_t next_listing = 1;
};

fuse_lowlevel_ops make_ops();

} // namespace powercut
