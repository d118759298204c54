// The validated, immutable configuration of spoold. Loaded from YAML by
// policy/config_loader (the only place yaml-cpp is included); every other component
// reads these plain structs. Defaults here are the embedded defaults.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace spoold::policy {

using Seconds = std::chrono::seconds;
using Millis = std::chrono::milliseconds;

// Most priority classes a configuration may define. Equals spool::kMaxClasses (policy may
// not include spool/; the daemon static_asserts that the two agree).
inline constexpr std::size_t kMaxClasses = 16;

struct ListenerConfig {
    std::string address = "127.0.0.1";
    std::uint16_t port = 2525;   // 0 = any free port (tests); the daemon logs the real one
    std::string tls_certificate; // PEM path; STARTTLS offered when both are set
    std::string tls_key;
    // PROXY protocol (v1 and v2) from load balancers: every connection must come from a
    // trusted_proxies network and start with a header, whose client address then stands
    // for the peer's everywhere; other peers are refused.
    bool proxy_protocol = false;
    std::vector<std::string> trusted_proxies; // CIDR networks, validated
};

struct LimitsConfig {
    std::uint64_t max_message_size = 50ULL << 20U;   // SIZE and the hard limit, bytes
    std::uint32_t max_recipients = 1000;             // per message; more get 452 4.5.3
    std::uint32_t max_sessions = 10000;              // in total; more get 421 4.7.0
    std::uint32_t max_sessions_per_client = 50;      // per client address
    std::uint32_t max_errors = 10;                   // per session, then 421
    std::uint32_t max_line_length = 4096;            // command lines; RFC 5321 minimum is 512
    Millis command_timeout{std::chrono::minutes(5)}; // RFC 5321 4.5.3.2
    Millis data_timeout{std::chrono::minutes(10)};
    // Message data sent before our 354 reply to DATA ends the session with 554 5.5.0.
    bool refuse_early_data = true;
};

enum class ExpiryAction { kBounce, kHold, kDiscard };

struct ClassConfig {
    std::string name;
    std::uint32_t weight = 1; // drain weight
    Seconds retention{std::chrono::hours(24 * 30)};
    ExpiryAction on_expiry = ExpiryAction::kBounce;
};

// One classification rule: every condition given must match (AND); first rule wins.
struct HeaderTest {
    std::string name;  // header field name, case-insensitive
    std::string regex; // ECMAScript, case-insensitive; empty = header present
};
struct ClassRule {
    std::string klass;                   // class name
    std::vector<std::string> sender;     // address or "@domain" or "domain"
    std::vector<std::string> recipient;  // address or "@domain" or "domain"
    std::vector<std::string> client_net; // CIDR
    std::vector<HeaderTest> headers;
    std::optional<std::uint64_t> size_over;  // message size > this
    std::optional<std::uint64_t> size_under; // message size < this
};

enum class DirectoryFormat { kList, kPasswd };
enum class DirectoryMissing { kAccept, kTempFail };

struct DirectoryConfig {
    std::string file; // empty = no directory: every local-domain address is accepted
    DirectoryFormat format = DirectoryFormat::kList;
    DirectoryMissing when_unavailable = DirectoryMissing::kTempFail;
    std::string default_domain;            // domain for bare user names in the file (lower case)
    std::string recipient_delimiter = "+"; // "user+tag@dom" is looked up as "user@dom"; "" = off
    Millis poll_interval{std::chrono::seconds(30)}; // file change check; 0 = SIGHUP only
    // LMDB map of the directory store: room for the live table and the one a reload builds
    // beside it (about 2 x 70 bytes per entry). The file grows only as used.
    std::uint64_t map_size = 4ULL << 30U;
};

struct SpoolConfig {
    std::string path = "/var/spool/spoold";
    std::uint64_t max_size = 64ULL << 30U;     // LMDB map size
    double high_watermark = 0.90;              // fraction of max_size: above it 452
    std::uint64_t min_free_disk = 1ULL << 30U; // below this free disk: 452
};

enum class MailstoreKind { kMaildir, kLmtp, kSmtp };

// One mailstore's budget shared by the whole fleet (all nodes with the same `fleet.redis`
// and key_prefix), on top of each node's own drain limits. Needs the `fleet` section.
struct MailstoreFleetConfig {
    std::uint32_t max_concurrency = 0; // deliveries in flight fleet-wide; 0 = no fleet limit
    double max_rate = 0;               // deliveries started per second fleet-wide; 0 = none
    std::uint32_t urgent_reserve = 0;  // of max_concurrency, slots only the urgent class takes
    bool limited() const { return max_concurrency > 0 || max_rate > 0; }
};

struct MailstoreConfig {
    std::string name = "default";
    MailstoreKind kind = MailstoreKind::kMaildir;
    std::string maildir_root =
        "/var/mail/spoold";         // Maildir: <root>/<domain>/<local>/ (new, cur, tmp)
    std::string host = "127.0.0.1"; // LMTP/SMTP over TCP
    std::uint16_t port = 24;
    std::string unix_socket; // LMTP over a Unix socket, when set
    bool starttls = true;    // SMTP: use STARTTLS when offered
    Millis connect_timeout{std::chrono::seconds(10)};
    Millis command_timeout{std::chrono::seconds(60)};
    Millis data_timeout{std::chrono::seconds(300)};
    // Recipients in these (local) domains are delivered here. A mailstore without
    // domains is the default: it takes every domain no other mailstore lists.
    std::vector<std::string> domains;
    MailstoreFleetConfig fleet;
};

struct DrainConfig {
    std::uint32_t max_concurrency = 16;    // deliveries in flight per mailstore
    std::uint32_t initial_concurrency = 2; // after recovery (slow start)
    double max_rate = 0;                   // messages/s; 0 = unlimited
    std::string strict_class;              // served before all others when set
    Millis breaker_min_backoff{std::chrono::seconds(1)};
    Millis breaker_max_backoff{std::chrono::minutes(5)};
    std::uint32_t breaker_failures = 3;        // consecutive trouble signals that open it
    Millis retry_min{std::chrono::minutes(1)}; // per-recipient 4xx backoff
    Millis retry_max{std::chrono::hours(1)};
    std::uint32_t max_per_recipient = 4; // deliveries in flight to one recipient
};

struct BounceConfig {
    std::string smarthost = "127.0.0.1"; // DSNs go out through this SMTP relay
    std::uint16_t smarthost_port = 25;
    // The smarthost's own connection settings (not a mailstore's).
    bool smarthost_starttls = true; // use STARTTLS when offered
    Millis smarthost_connect_timeout{std::chrono::seconds(10)};
    Millis smarthost_command_timeout{std::chrono::seconds(60)};
    Millis smarthost_data_timeout{std::chrono::seconds(300)};
    std::string dsn_sender = "MAILER-DAEMON"; // local part (domain = hostname) or full address
    std::optional<Seconds> delay_warning;     // off when empty
};

// The fleet: MX nodes sharing drain budgets and status through one Redis (never on the
// intake path). Without Redis a node drains alone.
struct FleetConfig {
    // Where Redis listens: a Unix socket path, else host and port; neither = no Redis.
    std::string redis_socket;
    std::string redis_host;
    std::uint16_t redis_port = 6379;
    std::string node;                   // this node's name in the fleet; default: hostname
    std::string key_prefix = "spoold:"; // every key this fleet uses starts with it
    Millis timeout{std::chrono::milliseconds(500)}; // deadline on every Redis request
    Millis lease_ttl{std::chrono::seconds(10)};     // leases and node status expire after
    std::string urgent_class;                       // the reserve's class; default: the first

    std::string redis_address() const; // "host:port" or the socket path, for logs
    bool coordinated() const { return !redis_socket.empty() || !redis_host.empty(); }
};

enum class MilterFailure { kTempFail, kAccept };

// One mail filter (milter), asked at every SMTP stage before we answer.
struct MilterConfig {
    std::string name;    // for logs; unique
    std::string address; // as configured: "inet:127.0.0.1:11332", "unix:/run/rspamd/milter.sock"
    std::string host;    // inet: the host (name or address) and port
    std::uint16_t port = 0;
    std::string unix_socket; // unix: the socket's path
    // Postfix's defaults: milter_connect_timeout, milter_command_timeout (HELO, MAIL, RCPT,
    // DATA), milter_content_timeout (header, body, end of message).
    Millis connect_timeout{std::chrono::seconds(30)};
    Millis command_timeout{std::chrono::seconds(30)};
    Millis content_timeout{std::chrono::seconds(300)};
    // When the filter fails or times out: tempfail (451 4.7.1, the sender retries; never
    // lose mail because a filter is down) or accept (as if it were not configured).
    MilterFailure on_failure = MilterFailure::kTempFail;
};

// Peers whose `spoolctl xfer` claims (class, arrival, expiry) we honour.
struct XferConfig {
    std::vector<std::string> peers; // CIDR networks, validated at load
};

struct MetricsConfig {
    std::string address = "127.0.0.1";
    std::uint16_t port = 0; // 0 = off
};

struct Config {
    std::string source_file; // where it was loaded from, for errors and reload
    std::string hostname = "localhost";
    // Our authserv-id (RFC 8601): Authentication-Results fields claiming it are removed
    // from incoming mail before the filters see it. Empty = the hostname.
    std::string authserv_id;
    // The one in force: authserv_id, else the hostname. Filters learn it as the macro
    // {daemon_name} (Postfix's milter_macro_daemon_name), which rspamd writes as the
    // authserv-id of the Authentication-Results it adds.
    const std::string& our_authserv_id() const {
        return authserv_id.empty() ? hostname : authserv_id;
    }
    // Started as root (to bind port 25), spoold switches to this user once its sockets
    // are bound. Empty = keep the user it was started as.
    std::string user;
    std::vector<ListenerConfig> listeners{ListenerConfig{}};
    std::vector<std::string> local_domains; // lower case
    DirectoryConfig directory;
    LimitsConfig limits;
    SpoolConfig spool;
    std::vector<ClassConfig> classes{
        {"urgent", 8, std::chrono::hours(24 * 30), ExpiryAction::kBounce},
        {"normal", 4, std::chrono::hours(24 * 30), ExpiryAction::kBounce},
        {"bulk", 1, std::chrono::hours(24 * 30), ExpiryAction::kBounce}};
    std::string default_class = "normal";
    std::vector<ClassRule> rules;
    std::vector<MailstoreConfig> mailstores{MailstoreConfig{}};
    DrainConfig drain;
    std::vector<MilterConfig> milters; // asked in this order
    BounceConfig bounces;
    FleetConfig fleet;
    XferConfig xfer;
    MetricsConfig metrics;
    std::string log_level = "info";
    std::string log_format = "keyvalue"; // or "postfix": Postfix-shaped lines (common/log)

    // Index of a class by name (the ClassId stored in the spool), or nullopt.
    std::optional<std::uint8_t> class_id(const std::string& name) const;
};

// Loads and validates a YAML file. Errors are kConfig with "file:line:column: message"
// (1-based), exactly one per call: the first problem found. Relative paths in the file are
// resolved against the file's directory. Never throws.
Result<std::shared_ptr<const Config>> load_config(const std::string& path);
// Same, from text (tests); `name` stands for the file name in messages, and relative paths
// are resolved against name's directory (left relative when `name` has none).
Result<std::shared_ptr<const Config>> parse_config(const std::string& text,
                                                   const std::string& name);

// Every key the schema accepts, as "section.key" with "[]" for list items
// ("classes[].weight"); lets a test check that etc/spoold.yaml documents them all.
std::vector<std::string> config_schema_keys();

} // namespace spoold::policy
