// spoold's version, as --version, the status page and the milter macro v report it.
// Only the number: build and packaging facts stay out.
#pragma once

namespace spoold {

inline constexpr const char* kVersion = "0.1.0";

} // namespace spoold
