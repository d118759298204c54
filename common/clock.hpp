// Time as the rest of spoold sees it: a Clock interface so tests can drive time
// (FakeClock) instead of sleeping. Wall time only; no timers here.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace spoold {

// Milliseconds since the Unix epoch; the unit of every persisted timestamp.
using UnixMillis = std::int64_t;

class Clock {
public:
    virtual ~Clock() = default;
    virtual UnixMillis now_ms() const = 0;
};

class SystemClock final : public Clock {
public:
    UnixMillis now_ms() const override {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }
    static const SystemClock& instance() {
        static const SystemClock clock;
        return clock;
    }
};

class FakeClock final : public Clock {
public:
    explicit FakeClock(UnixMillis start = 1'700'000'000'000) : now_(start) {}
    UnixMillis now_ms() const override { return now_.load(); }
    void advance_ms(std::int64_t delta) { now_ += delta; }
    void set_ms(UnixMillis t) { now_ = t; }

private:
    std::atomic<UnixMillis> now_;
};

} // namespace spoold
