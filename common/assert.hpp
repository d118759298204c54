// SPOOLD_ASSERT: an invariant the code relies on, checked in every build type (not only with
// assert()'s NDEBUG off). A failure logs one error line and aborts. Not for what input or
// stored data can cause: a peer's bytes or a damaged record are Errors, never an abort.
#pragma once

#include <cstdlib>
#include <string_view>

#include "common/log.hpp"

namespace spoold::detail {

[[noreturn]] inline void assert_failed(std::string_view expr, std::string_view file, int line,
                                       std::string_view why) {
    log::error("event=assert_failed expr={} at={}:{} why={}", log::quote(expr), file, line,
               log::quote(why));
    std::abort();
}

} // namespace spoold::detail

// `why` says what the broken invariant means, for the log line.
#define SPOOLD_ASSERT(cond, why)                                                                   \
    do {                                                                                           \
        if (!(cond)) [[unlikely]] {                                                                \
            ::spoold::detail::assert_failed(#cond, __FILE__, __LINE__, why);                       \
        }                                                                                          \
    } while (false)
