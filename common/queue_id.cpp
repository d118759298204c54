#include "common/queue_id.hpp"

#include <algorithm>
#include <array>
#include <random>

namespace spoold {
namespace {

constexpr std::string_view kAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
constexpr int kTextLength = 13; // ceil(64 / 5)

int decode_digit(char c) {
    if (c >= 'a' && c <= 'z') {
        c = static_cast<char>(c - 'a' + 'A');
    }
    if (c == 'O') {
        c = '0';
    } else if (c == 'I' || c == 'L') {
        c = '1';
    }
    const auto pos = kAlphabet.find(c);
    return pos == std::string_view::npos ? -1 : static_cast<int>(pos);
}

} // namespace

std::string QueueId::text() const {
    std::string out(kTextLength, '0');
    std::uint64_t v = value;
    for (int i = kTextLength - 1; i >= 0; --i) {
        out[static_cast<std::size_t>(i)] = kAlphabet[v & 31U];
        v >>= 5U;
    }
    return out;
}

std::optional<QueueId> QueueId::parse(std::string_view text) {
    if (text.size() != kTextLength) {
        return std::nullopt;
    }
    // The first digit carries only the top 4 bits (13 * 5 = 65).
    if (decode_digit(text[0]) < 0 || decode_digit(text[0]) > 15) {
        return std::nullopt;
    }
    std::uint64_t v = 0;
    for (const char c : text) {
        const int d = decode_digit(c);
        if (d < 0) {
            return std::nullopt;
        }
        v = (v << 5U) | static_cast<std::uint64_t>(d);
    }
    return QueueId{v};
}

UnixMillis QueueId::millis() const {
    return static_cast<UnixMillis>(value >> kQueueIdSequenceBits) + kQueueIdEpochMs;
}

QueueIdGenerator::QueueIdGenerator(const Clock& clock) : clock_(clock) {
    std::random_device rd;
    instance_ = static_cast<std::uint8_t>(rd());
}

void QueueIdGenerator::raise_floor(QueueId floor) {
    const std::lock_guard lock(mutex_);
    last_ = std::max(last_, floor.value);
}

QueueId QueueIdGenerator::next() {
    const auto ms =
        static_cast<std::uint64_t>(std::max<UnixMillis>(0, clock_.now_ms() - kQueueIdEpochMs));
    const std::uint64_t candidate = (ms << kQueueIdSequenceBits) |
                                    (static_cast<std::uint64_t>(instance_) << kQueueIdCounterBits);
    const std::lock_guard lock(mutex_);
    last_ = std::max(last_ + 1, candidate);
    return QueueId{last_};
}

} // namespace spoold
