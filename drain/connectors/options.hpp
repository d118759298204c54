// Settings every connector shares that are not in policy::MailstoreConfig (our host
// name, TLS verification, pool bounds, where blocking file I/O runs). Plain data only.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

namespace spoold::drain::connectors {

struct ConnectorOptions {
    // Our name: LHLO/EHLO argument and the host part of Maildir file names.
    std::string hostname = "localhost";
    // SMTP STARTTLS certificate checking. Off by default: the usual peer is a loopback
    // smarthost or a mailstore on a private network with a self-signed certificate,
    // where encryption without authentication is still better than plain text (as
    // Postfix's "may" level). Turn it on for a relay across untrusted networks.
    bool tls_verify = false;
    // Connection pool per LMTP/SMTP mailstore: at most this many idle connections,
    // each closed when it has been idle longer than idle_timeout (Dovecot's LMTP
    // idles out after a few minutes; staying well below avoids racing it).
    std::size_t max_idle_connections = 16;
    std::chrono::milliseconds idle_timeout{std::chrono::seconds(30)};
    std::size_t body_piece_bytes = 64 * 1024;
    // Where the Maildir connector runs its blocking open/write/fsync/rename. When
    // empty it owns a small thread pool of its own.
    std::optional<boost::asio::any_io_executor> blocking_executor;
};

} // namespace spoold::drain::connectors
