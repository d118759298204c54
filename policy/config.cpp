#include "policy/config.hpp"

namespace spoold::policy {

std::optional<std::uint8_t> Config::class_id(const std::string& name) const {
    for (std::size_t i = 0; i < classes.size() && i < kMaxClasses; ++i) {
        if (classes[i].name == name) {
            return static_cast<std::uint8_t>(i);
        }
    }
    return std::nullopt;
}

std::string FleetConfig::redis_address() const {
    if (!redis_socket.empty()) {
        return redis_socket;
    }
    const bool v6 = redis_host.find(':') != std::string::npos;
    return (v6 ? "[" + redis_host + "]" : redis_host) + ":" + std::to_string(redis_port);
}

} // namespace spoold::policy
