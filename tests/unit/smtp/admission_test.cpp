#include <doctest/doctest.h>

#include <string>

#include "smtp/admission.hpp"

using namespace spoold;
using namespace spoold::smtp;

TEST_CASE("a new connection is served, or refused with one line: the first rule that applies") {
    policy::LimitsConfig limits;
    limits.max_sessions = 10;
    limits.max_sessions_per_client = 2;
    struct Row {
        AdmissionInput in;
        std::string line; // empty: served
        std::string reason;
    };
    const Row rows[] = {
        {{}, "", ""},
        {{.total = 9, .from_client = 1}, "", ""},
        // Limits.
        {{.total = 10},
         "421 4.7.0 mx.example Too many connections, try again later",
         "session-limit"},
        {{.total = 3, .from_client = 2},
         "421 4.7.0 mx.example Too many connections from your address, try again later",
         "session-limit"},
        // A trusted proxy's connection counts against its client only once the header
        // names the client; the total applies at once.
        {{.proxy_listener = true, .trusted_proxy = true, .total = 3, .from_client = 5}, "", ""},
        {{.proxy_listener = true, .trusted_proxy = true, .total = 10},
         "421 4.7.0 mx.example Too many connections, try again later",
         "session-limit"},
        // A PROXY listener serves its trusted proxies only, before any other rule.
        {{.proxy_listener = true, .stopping = true, .total = 10},
         "554 5.7.1 mx.example Connections only through a trusted proxy here",
         "proxy-untrusted"},
        // Stopping comes before the limits.
        {{.stopping = true, .total = 10, .from_client = 2},
         "421 4.3.2 mx.example Service shutting down, try again later",
         "session-limit"},
    };
    for (const auto& row : rows) {
        CAPTURE(row.line);
        const auto r = admit_connection(row.in, limits, "mx.example");
        REQUIRE(r.has_value() == !row.line.empty());
        if (r) {
            CHECK(r->line() == row.line);
            CHECK(r->wire == row.line + "\r\n");
            CHECK(r->reason == row.reason);
        }
    }
}

TEST_CASE("a client at max_sessions_per_client opens no more, and hears why") {
    policy::LimitsConfig limits;
    limits.max_sessions_per_client = 2;
    CHECK_FALSE(client_at_limit(0, limits));
    CHECK_FALSE(client_at_limit(1, limits));
    CHECK(client_at_limit(2, limits));
    CHECK(client_at_limit(3, limits));
    limits.max_sessions_per_client = 0;
    CHECK(client_at_limit(0, limits));
    const Refusal r = client_refusal("mx.example");
    CHECK(r.wire ==
          "421 4.7.0 mx.example Too many connections from your address, try again later\r\n");
    CHECK(r.reason == "session-limit");
}
