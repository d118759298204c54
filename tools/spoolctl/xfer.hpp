// `spoolctl xfer --to HOST:PORT FILTER`: moves queued messages to a peer spoold over SMTP.
// At least once: each is held (so the running drain leaves it alone), relayed, and removed
// only after the peer's 250; on any failure it is released (if we held it) and stays. The
// selection, question and report are run_writes'; the SMTP client is relay_client.hpp.
#pragma once

#include <string>

#include "spool/spool.hpp"
#include "tools/spoolctl/relay_client.hpp"
#include "tools/spoolctl/verbs.hpp"

namespace spoold::spoolctl {

// Connections to the peer at once: each message costs a hold commit here and a commit there,
// so throughput is commits in parallel (10,000 messages: 107 s with 8, 33 s with 32 on a
// loaded 2-core machine); below the peer's default limits.max_sessions_per_client (50).
inline constexpr std::size_t kXferConnections = 32;

// The envelope as it goes out: pending recipients only (delivered and failed ones are
// done), the DSN parameters, and the claim of class, arrival and expiry (honoured by a
// peer that lists us in xfer.peers). Empty recipients: nothing left to move.
RelayMessage relay_message(const spool::Envelope& env, const std::string& class_name);

int verb_xfer(Context& ctx);

} // namespace spoold::spoolctl
