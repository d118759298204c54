#include "policy/units.hpp"

#include <array>
#include <cctype>
#include <charconv>
#include <limits>
#include <string>

#include "common/address.hpp"
#include "common/text.hpp"

namespace spoold::policy {
namespace {

struct Split {
    std::uint64_t number = 0;
    std::string unit; // lower-cased, surrounding blanks removed
};

Result<Split> split_number(std::string_view text, std::string_view what) {
    const std::string_view t = ascii::trim(text);
    std::size_t digits = 0;
    while (digits < t.size() && std::isdigit(static_cast<unsigned char>(t[digits])) != 0) {
        ++digits;
    }
    if (digits == 0) {
        return fail(ErrorKind::kInvalid,
                    std::string(what) + " must start with a number: \"" + std::string(text) + "\"");
    }
    Split out;
    const auto [ptr, ec] = std::from_chars(t.data(), t.data() + digits, out.number);
    if (ec != std::errc{} || ptr != t.data() + digits) {
        return fail(ErrorKind::kInvalid,
                    std::string(what) + " is too large: \"" + std::string(text) + "\"");
    }
    // One blank between number and unit ("10 MiB") is tolerated; people write it.
    out.unit = address::ascii_lower(ascii::trim(t.substr(digits)));
    return out;
}

bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t& out) {
    return __builtin_mul_overflow(a, b, &out);
}

} // namespace

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
    auto split = split_number(text, "duration");
    if (!split) {
        return tl::unexpected(split.error());
    }
    struct Unit {
        std::string_view name;
        std::uint64_t ms;
    };
    static constexpr std::array<Unit, 6> kUnits{{{"ms", 1},
                                                 {"s", 1000},
                                                 {"m", 60'000},
                                                 {"h", 3'600'000},
                                                 {"d", 86'400'000},
                                                 {"w", 604'800'000}}};
    if (split->unit.empty()) {
        if (split->number == 0) {
            return std::chrono::milliseconds(0);
        }
        return fail(ErrorKind::kInvalid,
                    "duration needs a unit (ms, s, m, h, d, w): \"" + std::string(text) + "\"");
    }
    for (const auto& unit : kUnits) {
        if (split->unit == unit.name) {
            std::uint64_t ms = 0;
            if (mul_overflows(split->number, unit.ms, ms) ||
                ms > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
                return fail(ErrorKind::kInvalid,
                            "duration is too large: \"" + std::string(text) + "\"");
            }
            return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
        }
    }
    return fail(ErrorKind::kInvalid, "unknown duration unit \"" + split->unit +
                                         "\" (use ms, s, m, h, d, w): \"" + std::string(text) +
                                         "\"");
}

Result<std::uint64_t> parse_size(std::string_view text) {
    auto split = split_number(text, "size");
    if (!split) {
        return tl::unexpected(split.error());
    }
    struct Unit {
        std::string_view name;
        std::uint64_t bytes;
    };
    static constexpr std::array<Unit, 10> kUnits{{{"", 1},
                                                  {"b", 1},
                                                  {"kib", 1ULL << 10U},
                                                  {"mib", 1ULL << 20U},
                                                  {"gib", 1ULL << 30U},
                                                  {"tib", 1ULL << 40U},
                                                  {"kb", 1'000ULL},
                                                  {"mb", 1'000'000ULL},
                                                  {"gb", 1'000'000'000ULL},
                                                  {"tb", 1'000'000'000'000ULL}}};
    for (const auto& unit : kUnits) {
        if (split->unit == unit.name) {
            std::uint64_t bytes = 0;
            if (mul_overflows(split->number, unit.bytes, bytes)) {
                return fail(ErrorKind::kInvalid,
                            "size is too large: \"" + std::string(text) + "\"");
            }
            return bytes;
        }
    }
    return fail(ErrorKind::kInvalid, "unknown size unit \"" + split->unit +
                                         "\" (use B, KiB, MiB, GiB, TiB, KB, MB, GB, TB): \"" +
                                         std::string(text) + "\"");
}

} // namespace spoold::policy
