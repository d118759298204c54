// The control-byte choices that pick splits and verdicts for the targets whose input starts
// with a seed, and fuzz::check (fuzz_check.hpp) with them. No target logic: each target
// states its own invariants.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "tests/fuzz/fuzz_check.hpp"

namespace spoold::fuzz {

// splitmix64: every choice of a harness comes from the control bytes.
class Choices {
public:
    explicit Choices(std::uint64_t seed) : state_(seed) {}
    std::uint64_t next() {
        std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31U);
    }
    // True with probability 1/n.
    bool one_in(std::uint64_t n) { return next() % n == 0; }
    std::size_t below(std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(next() % n); }

private:
    std::uint64_t state_;
};

// Inputs start with up to 8 control bytes (the Choices seed); the rest is the payload.
inline constexpr std::size_t kControlBytes = 8;

struct Input {
    Choices choices;
    std::string_view payload;
};

inline Input split_input(const std::uint8_t* data, std::size_t size) {
    std::uint64_t seed = 0;
    const std::size_t control = size < kControlBytes ? size : kControlBytes;
    std::memcpy(&seed, data, control);
    return {Choices(seed),
            std::string_view(reinterpret_cast<const char*>(data) + control, size - control)};
}

} // namespace spoold::fuzz
