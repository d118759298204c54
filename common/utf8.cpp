#include "common/utf8.hpp"

#include <array>
#include <cstdint>

namespace spoold::utf8 {

std::size_t sequence_length(std::string_view text, std::size_t i) {
    const auto b0 = static_cast<unsigned char>(text[i]);
    if (b0 < 0x80U) {
        return 1;
    }
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if ((b0 & 0xE0U) == 0xC0U) {
        len = 2;
        cp = b0 & 0x1FU;
    } else if ((b0 & 0xF0U) == 0xE0U) {
        len = 3;
        cp = b0 & 0x0FU;
    } else if ((b0 & 0xF8U) == 0xF0U) {
        len = 4;
        cp = b0 & 0x07U;
    } else {
        return 0;
    }
    if (i + len > text.size()) {
        return 0;
    }
    for (std::size_t k = 1; k < len; ++k) {
        const auto b = static_cast<unsigned char>(text[i + k]);
        if ((b & 0xC0U) != 0x80U) {
            return 0;
        }
        cp = (cp << 6U) | (b & 0x3FU);
    }
    constexpr std::array<std::uint32_t, 5> kMinForLength{0, 0, 0x80, 0x800, 0x10000};
    constexpr std::uint32_t kMaxCodePoint = 0x10FFFF;
    constexpr std::uint32_t kSurrogateLow = 0xD800;
    constexpr std::uint32_t kSurrogateHigh = 0xDFFF;
    if (cp < kMinForLength[len] || cp > kMaxCodePoint ||
        (cp >= kSurrogateLow && cp <= kSurrogateHigh)) {
        return 0;
    }
    return len;
}

} // namespace spoold::utf8
