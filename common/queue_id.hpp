// Queue ids: unique, time-ordered 64-bit numbers shown as 13-character Crockford
// base32 text (sorts like the number). Uniqueness within one spool is the
// generator's job; it does not know about LMDB.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "common/clock.hpp"

namespace spoold {

struct QueueId {
    std::uint64_t value = 0;

    std::string text() const;
    static std::optional<QueueId> parse(std::string_view text);
    // Milliseconds since the Unix epoch at which the id was made.
    UnixMillis millis() const;
    // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 takes `(a <=> b) < 0` for a pointer
    friend auto operator<=>(const QueueId&, const QueueId&) = default;
};

// Layout: 44 bits of milliseconds since kQueueIdEpochMs, 8 bits of process
// instance (random per generator, so spoolctl and spoold rarely collide; the spool
// still refuses to overwrite an existing id), 12 bits of sequence.
inline constexpr UnixMillis kQueueIdEpochMs = 1'577'836'800'000; // 2020-01-01
inline constexpr int kQueueIdSequenceBits = 20;
inline constexpr int kQueueIdCounterBits = 12;

// Thread-safe; ids are strictly increasing even if the clock steps back.
class QueueIdGenerator {
public:
    explicit QueueIdGenerator(const Clock& clock);
    QueueIdGenerator(const Clock& clock, std::uint8_t instance)
        : clock_(clock), instance_(instance) {}
    // Every later id is greater than `floor` (used at open with the spool's newest id).
    void raise_floor(QueueId floor);
    QueueId next();

private:
    const Clock& clock_;
    std::uint8_t instance_ = 0;
    std::mutex mutex_;
    std::uint64_t last_ = 0;
};

} // namespace spoold
