// Result<T> and the typed Error every component returns for expected failures, and the
// SPOOLD_TRY / SPOOLD_CHECK macros that pass an error up. Mapping an ErrorKind to an SMTP
// reply lives in common/reply.hpp, not here.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <tl/expected.hpp>

namespace spoold {

enum class ErrorKind {
    kInvalid,     // bad input from a caller or a peer
    kNotFound,    // the thing asked for does not exist
    kCorrupt,     // a stored record could not be decoded
    kSpoolFull,   // LMDB map full or spool above its watermark: retry later
    kDiskFull,    // the filesystem said ENOSPC / EDQUOT
    kIo,          // any other local I/O or storage failure
    kTimeout,     // a peer or a step took longer than its deadline
    kUnavailable, // a dependency (mailstore, directory) cannot be reached
    kProtocol,    // a peer spoke the protocol wrongly
    kConfig,      // configuration is invalid
    kShutdown,    // the component is stopping
    kInternal,    // a bug: an invariant did not hold
};

std::string_view to_string(ErrorKind kind);

struct Error {
    ErrorKind kind = ErrorKind::kInternal;
    std::string message;

    // "kind: message", for logs.
    std::string describe() const;
};

template <typename T> using Result = tl::expected<T, Error>;
using Status = tl::expected<void, Error>;

inline tl::unexpected<Error> fail(ErrorKind kind, std::string message) {
    return tl::unexpected<Error>(Error{kind, std::move(message)});
}

} // namespace spoold

// Passing an error up, in a function that returns a Result or a Status. (A macro, because
// only a macro can return from its caller; GCC's statement expressions are not standard.)
//
//   SPOOLD_TRY(txn, env.begin_read());   // declares `txn` = the value, or returns the error
//   SPOOLD_CHECK(txn.put(dbi, k, v));    // returns the error; the value (if any) is unused
// NOLINTBEGIN(bugprone-macro-parentheses): `var` and `tmp` are names being declared
// SPOOLD_TRY moves the value out of the Result into a new variable `var`. The hidden names
// carry the line number, so a lambda inside `expr` may use the macros on lines of its own.
#define SPOOLD_CONCAT_INNER(a, b) a##b
#define SPOOLD_CONCAT(a, b) SPOOLD_CONCAT_INNER(a, b)
#define SPOOLD_TRY(var, expr) SPOOLD_TRY_IMPL(var, expr, SPOOLD_CONCAT(spoold_try_, __LINE__))
#define SPOOLD_TRY_IMPL(var, expr, tmp)                                                            \
    auto tmp = (expr);                                                                             \
    if (!tmp) {                                                                                    \
        return ::tl::unexpected(std::move(tmp).error());                                           \
    }                                                                                              \
    auto var = std::move(*tmp)
#define SPOOLD_CHECK(expr) SPOOLD_CHECK_IMPL(expr, SPOOLD_CONCAT(spoold_check_, __LINE__))
#define SPOOLD_CHECK_IMPL(expr, tmp)                                                               \
    do {                                                                                           \
        if (auto tmp = (expr); !tmp) {                                                             \
            return ::tl::unexpected(std::move(tmp).error());                                       \
        }                                                                                          \
    } while (false) // NOLINTEND(bugprone-macro-parentheses)
