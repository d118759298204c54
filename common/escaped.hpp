// What a co_spawn completion handler says about an exception that escaped a coroutine:
// its message, or "unknown exception". Each handler still logs and recovers in its own
// way; nothing here swallows an exception.
#pragma once

#include <exception>
#include <string>

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

} // namespace spoold
