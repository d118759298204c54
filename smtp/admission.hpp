// Whether the server takes on a connection it just accepted, and the one-line reply that
// refuses it: decided from the counts and the limits alone. No sockets and no counting
// here (smtp/server_state.hpp keeps the counts).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "policy/config.hpp"

namespace spoold::smtp {

struct AdmissionInput {
    bool proxy_listener = false;   // the listener speaks the PROXY protocol
    bool trusted_proxy = false;    // the peer is one of its trusted proxies
    bool stopping = false;         // the server is stopping
    std::size_t total = 0;         // connections open now
    std::uint32_t from_client = 0; // of them, from the peer's address
};

struct Refusal {
    std::string wire;        // the reply line with its CRLF
    std::string_view reason; // for the log: "session-limit", "proxy-untrusted"
    // The reply line without its CRLF, as the log quotes it.
    std::string_view line() const { return std::string_view(wire).substr(0, wire.size() - 2); }
};

// nullopt: serve the connection. Checked in this order: a PROXY listener serves only its
// trusted proxies (554 5.7.1), a stopping server nobody (421 4.3.2), then max_sessions
// (421 4.7.0) and max_sessions_per_client, which a trusted proxy's connection is counted
// against only once its header names the client (see client_refusal).
std::optional<Refusal> admit_connection(const AdmissionInput& in,
                                        const policy::LimitsConfig& limits,
                                        std::string_view hostname);

// A client with `from_client` connections open may open no more.
bool client_at_limit(std::uint32_t from_client, const policy::LimitsConfig& limits);

// The refusal for a client already at max_sessions_per_client (421 4.7.0).
Refusal client_refusal(std::string_view hostname);

} // namespace spoold::smtp
