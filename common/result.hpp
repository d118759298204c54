// Result<T> and the typed Error every component returns for expected failures.
// Mapping an ErrorKind to an SMTP reply lives in common/reply.hpp, not here.
#pragma once

#include <string>
#include <string_view>
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
