#include "common/result.hpp"

#include <fmt/format.h>

namespace spoold {

std::string_view to_string(ErrorKind kind) {
    switch (kind) {
    case ErrorKind::kInvalid: return "invalid";
    case ErrorKind::kNotFound: return "not-found";
    case ErrorKind::kCorrupt: return "corrupt";
    case ErrorKind::kSpoolFull: return "spool-full";
    case ErrorKind::kDiskFull: return "disk-full";
    case ErrorKind::kIo: return "io";
    case ErrorKind::kTimeout: return "timeout";
    case ErrorKind::kUnavailable: return "unavailable";
    case ErrorKind::kProtocol: return "protocol";
    case ErrorKind::kConfig: return "config";
    case ErrorKind::kShutdown: return "shutdown";
    case ErrorKind::kInternal: return "internal";
    }
    return "unknown";
}

std::string Error::describe() const { return fmt::format("{}: {}", to_string(kind), message); }

} // namespace spoold
