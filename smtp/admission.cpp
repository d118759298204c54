#include "smtp/admission.hpp"

#include <fmt/format.h>

namespace spoold::smtp {

bool client_at_limit(std::uint32_t from_client, const policy::LimitsConfig& limits) {
    return from_client >= limits.max_sessions_per_client;
}

Refusal client_refusal(std::string_view hostname) {
    return {fmt::format("421 4.7.0 {} Too many connections from your address, try again later\r\n",
                        hostname),
            "session-limit"};
}

std::optional<Refusal> admit_connection(const AdmissionInput& in,
                                        const policy::LimitsConfig& limits,
                                        std::string_view hostname) {
    if (in.proxy_listener && !in.trusted_proxy) {
        // A PROXY listener serves its load balancers only: a peer outside trusted_proxies
        // could name any client it likes.
        return Refusal{
            fmt::format("554 5.7.1 {} Connections only through a trusted proxy here\r\n", hostname),
            "proxy-untrusted"};
    }
    if (in.stopping) {
        return Refusal{
            fmt::format("421 4.3.2 {} Service shutting down, try again later\r\n", hostname),
            "session-limit"};
    }
    if (in.total >= limits.max_sessions) {
        return Refusal{
            fmt::format("421 4.7.0 {} Too many connections, try again later\r\n", hostname),
            "session-limit"};
    }
    if (!in.trusted_proxy && client_at_limit(in.from_client, limits)) {
        return client_refusal(hostname);
    }
    return std::nullopt;
}

} // namespace spoold::smtp
