#include "policy/retention.hpp"

#include <chrono>
#include <limits>

namespace spoold::policy {
namespace {

UnixMillis add_saturating(UnixMillis base, std::chrono::milliseconds delta) {
    UnixMillis out = 0;
    if (__builtin_add_overflow(base, delta.count(), &out)) {
        return std::numeric_limits<UnixMillis>::max();
    }
    return out;
}

const ClassConfig* find_class(const Config& config, std::uint8_t class_id) {
    return class_id < config.classes.size() ? &config.classes[class_id] : nullptr;
}

} // namespace

UnixMillis expiry_ms(const Config& config, std::uint8_t class_id, UnixMillis arrival_ms) {
    const ClassConfig* klass = find_class(config, class_id);
    if (klass == nullptr) {
        const auto fallback = config.class_id(config.default_class);
        klass = fallback ? find_class(config, *fallback) : nullptr;
    }
    const Seconds retention = klass != nullptr ? klass->retention : ClassConfig{}.retention;
    if (retention.count() == 0) {
        return kNeverExpires;
    }
    return add_saturating(arrival_ms,
                          std::chrono::duration_cast<std::chrono::milliseconds>(retention));
}

ExpiryAction expiry_action(const Config& config, std::uint8_t class_id) {
    const ClassConfig* klass = find_class(config, class_id);
    return klass != nullptr ? klass->on_expiry : ExpiryAction::kHold;
}

bool same_retention(const Config& a, const Config& b) {
    if (a.classes.size() != b.classes.size() || a.default_class != b.default_class) {
        return false;
    }
    for (std::size_t i = 0; i < a.classes.size(); ++i) {
        if (a.classes[i].retention != b.classes[i].retention) {
            return false;
        }
    }
    return true;
}

bool is_expired(UnixMillis expires_ms, UnixMillis now_ms) {
    return expires_ms != kNeverExpires && now_ms >= expires_ms;
}

bool delay_warning_due(const BounceConfig& bounces, UnixMillis arrival_ms, UnixMillis now_ms) {
    if (!bounces.delay_warning) {
        return false;
    }
    const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(*bounces.delay_warning);
    return now_ms >= add_saturating(arrival_ms, age);
}

} // namespace spoold::policy
