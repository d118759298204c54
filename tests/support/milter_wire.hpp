// Milter packets as a filter writes them, for the tests and the no-op filter: milter/codec
// encodes only the MTA's side, and a test must not build the filter's bytes with the code
// it checks. Framing only; what the packets mean is milter/codec's.
#pragma once

#include <cstdint>
#include <string>

namespace spoold::test {

inline std::string be32(std::uint32_t v) {
    return std::string{static_cast<char>(v >> 24U), static_cast<char>((v >> 16U) & 0xFFU),
                       static_cast<char>((v >> 8U) & 0xFFU), static_cast<char>(v & 0xFFU)};
}

// Length (the code plus the data), code, data.
inline std::string milter_packet(char code, const std::string& data = {}) {
    return be32(static_cast<std::uint32_t>(data.size() + 1)) + code + data;
}

// A NUL-terminated field.
inline std::string z(const std::string& s) { return s + '\0'; }

} // namespace spoold::test
