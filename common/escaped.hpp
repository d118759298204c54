// What a co_spawn completion handler says about an exception that escaped a coroutine:
// its message, or "unknown exception", and the log line of a handler that only logs.
// Handlers that recover (restart a loop, release a slot) still do so themselves.
#pragma once

#include <exception>
#include <string>
#include <string_view>

#include "common/log.hpp"

namespace spoold {

// `e` must not be null (handlers call this only when a coroutine ended by an exception).
inline std::string describe_escaped(const std::exception_ptr& e) {
    try {
        std::rethrow_exception(e);
    } catch (const std::exception& ex) {
        return ex.what();
    } catch (...) {
        return "unknown exception";
    }
}

// The whole of a handler that only logs: "<fields> error=<quoted message>" at error
// level. A null `e` (the coroutine returned) logs nothing.
inline void log_escaped(std::string_view fields, const std::exception_ptr& e) {
    if (e) {
        log::error("{} error={}", fields, log::quote(describe_escaped(e)));
    }
}

} // namespace spoold
