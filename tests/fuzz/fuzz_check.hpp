// The fuzz targets' one way to report a broken invariant: a line naming it (and the input
// detail that shows it) on stderr, then abort(), which libFuzzer records as a crash with
// the input that caused it. Not for expected errors: those are checked values.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace spoold::fuzz {

inline void check(bool ok, const char* what, std::string_view detail = {}) {
    if (!ok) {
        std::fprintf(stderr, "invariant violated: %s%s%.*s\n", what, detail.empty() ? "" : ": ",
                     static_cast<int>(detail.size()), detail.data());
        std::abort();
    }
}

} // namespace spoold::fuzz
