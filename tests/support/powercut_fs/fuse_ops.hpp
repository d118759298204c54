// The FUSE low-level operations of the power-cut filesystem: each request mapped onto the
// Volume. No durability logic here (volume.hpp has it) and no event loop (main.cpp).
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

#include "tests/support/powercut_fs/volume.hpp"

namespace powercut {

// The operations; fuse_session_new's userdata must be the Volume they act on.
fuse_lowlevel_ops make_ops();

} // namespace powercut
