// YAML -> Config. The only file that includes yaml-cpp. Internally a LoadError is thrown
// at the first problem (validation reads top-down, and one clear error is the contract);
// parse_config catches it and every yaml-cpp exception and returns a kConfig Error.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <locale>
#include <regex>
#include <set>
#include <span>
#include <sstream>
#include <utility>

#include "common/host_port.hpp"
#include "common/log.hpp"
#include "policy/cidr.hpp"
#include "policy/config.hpp"
#include "policy/text.hpp"
#include "policy/units.hpp"

namespace spoold::policy {
namespace {

namespace fs = std::filesystem;

struct LoadError {
    YAML::Mark mark;
    std::string message;
};

[[noreturn]] void bad(const YAML::Mark& mark, std::string message) {
    throw LoadError{mark, std::move(message)};
}
[[noreturn]] void bad(const YAML::Node& node, std::string message) {
    bad(node.Mark(), std::move(message));
}

std::string_view type_name(const YAML::Node& node) {
    switch (node.Type()) {
    case YAML::NodeType::Scalar: return "a scalar";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Map: return "a mapping";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined: break;
    }
    return "nothing";
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) {
        row[j] = j;
    }
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diag = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

// ---- scalars ----

std::string get_string(const YAML::Node& n, const std::string& path) {
    if (!n.IsScalar()) {
        bad(n, fmt::format("{}: expected a string, got {}", path, type_name(n)));
    }
    return n.Scalar();
}

std::uint64_t get_uint(const YAML::Node& n, const std::string& path, std::uint64_t min,
                       std::uint64_t max) {
    const std::string s = get_string(n, path);
    std::uint64_t v = 0;
    bool ok = !s.empty() && s.size() <= 20;
    for (const char c : s) {
        if (std::isdigit(static_cast<unsigned char>(c)) == 0 ||
            __builtin_mul_overflow(v, 10U, &v) ||
            __builtin_add_overflow(v, static_cast<unsigned>(c - '0'), &v)) {
            ok = false;
            break;
        }
    }
    if (!ok) {
        bad(n, fmt::format("{}: expected a whole number, got \"{}\"", path, s));
    }
    if (v < min || v > max) {
        bad(n, fmt::format("{}: {} is out of range ({} to {})", path, v, min, max));
    }
    return v;
}

double get_double(const YAML::Node& n, const std::string& path) {
    const std::string s = get_string(n, path);
    std::istringstream in(s);
    in.imbue(std::locale::classic());
    double v = 0;
    in >> v;
    if (s.empty() || in.fail() || !in.eof() || !std::isfinite(v)) {
        bad(n, fmt::format("{}: expected a number, got \"{}\"", path, s));
    }
    return v;
}

bool get_bool(const YAML::Node& n, const std::string& path) {
    const std::string s = ascii_lower(get_string(n, path));
    if (s == "true" || s == "yes" || s == "on") {
        return true;
    }
    if (s == "false" || s == "no" || s == "off") {
        return false;
    }
    bad(n, fmt::format("{}: expected true or false, got \"{}\"", path, s));
}

Millis get_millis(const YAML::Node& n, const std::string& path) {
    auto d = parse_duration(get_string(n, path));
    if (!d) {
        bad(n, fmt::format("{}: {}", path, d.error().message));
    }
    return *d;
}

Seconds get_seconds(const YAML::Node& n, const std::string& path) {
    const Millis ms = get_millis(n, path);
    if (ms.count() % 1000 != 0) {
        bad(n, fmt::format("{}: must be a whole number of seconds", path));
    }
    return std::chrono::duration_cast<Seconds>(ms);
}

std::uint64_t get_size(const YAML::Node& n, const std::string& path) {
    auto s = parse_size(get_string(n, path));
    if (!s) {
        bad(n, fmt::format("{}: {}", path, s.error().message));
    }
    return *s;
}

template <typename E>
E get_enum(const YAML::Node& n, const std::string& path,
           std::initializer_list<std::pair<std::string_view, E>> names) {
    const std::string s = get_string(n, path);
    std::string choices;
    for (const auto& [name, value] : names) {
        if (s == name) {
            return value;
        }
        choices += choices.empty() ? "" : ", ";
        choices += name;
    }
    bad(n, fmt::format("{}: \"{}\" is not one of {}", path, s, choices));
}

// A list of strings; a single scalar is taken as a list of one.
std::vector<std::string> get_strings(const YAML::Node& n, const std::string& path) {
    std::vector<std::string> out;
    if (n.IsScalar()) {
        out.push_back(n.Scalar());
        return out;
    }
    if (!n.IsSequence()) {
        bad(n, fmt::format("{}: expected a list of strings, got {}", path, type_name(n)));
    }
    for (std::size_t i = 0; i < n.size(); ++i) {
        out.push_back(get_string(n[i], fmt::format("{}[{}]", path, i)));
    }
    return out;
}

void check_sequence(const YAML::Node& n, const std::string& path) {
    if (!n.IsSequence()) {
        bad(n, fmt::format("{}: expected a list, got {}", path, type_name(n)));
    }
}

// ---- the schema: the keys each mapping may hold ----

using Keys = std::span<const std::string_view>;

constexpr std::array<std::string_view, 19> kTopKeys{
    "hostname",  "authserv_id", "user",    "listeners", "local_domains",
    "directory", "limits",      "spool",   "classes",   "default_class",
    "rules",     "mailstores",  "drain",   "milters",   "bounces",
    "fleet",     "xfer",        "metrics", "logging"};
constexpr std::array<std::string_view, 6> kListenerKeys{
    "address", "port", "tls_certificate", "tls_key", "proxy_protocol", "trusted_proxies"};
constexpr std::array<std::string_view, 7> kDirectoryKeys{
    "file",          "format",  "when_unavailable", "default_domain", "recipient_delimiter",
    "poll_interval", "map_size"};
constexpr std::array<std::string_view, 9> kLimitsKeys{
    "max_message_size", "max_recipients",  "max_sessions", "max_sessions_per_client", "max_errors",
    "max_line_length",  "command_timeout", "data_timeout", "refuse_early_data"};
constexpr std::array<std::string_view, 4> kSpoolKeys{"path", "max_size", "high_watermark",
                                                     "min_free_disk"};
constexpr std::array<std::string_view, 4> kClassKeys{"name", "weight", "retention", "on_expiry"};
constexpr std::array<std::string_view, 7> kRuleKeys{
    "class", "sender", "recipient", "client_net", "headers", "size_over", "size_under"};
constexpr std::array<std::string_view, 2> kHeaderTestKeys{"name", "regex"};
constexpr std::array<std::string_view, 12> kMailstoreKeys{
    "name",         "domains",     "kind",     "maildir_root",    "host",
    "port",         "unix_socket", "starttls", "connect_timeout", "command_timeout",
    "data_timeout", "fleet"};
constexpr std::array<std::string_view, 3> kMailstoreFleetKeys{"max_concurrency", "max_rate",
                                                              "urgent_reserve"};
constexpr std::array<std::string_view, 10> kDrainKeys{
    "max_concurrency",     "initial_concurrency", "max_rate",         "strict_class",
    "breaker_min_backoff", "breaker_max_backoff", "breaker_failures", "retry_min",
    "retry_max",           "max_per_recipient"};
constexpr std::array<std::string_view, 6> kMilterKeys{
    "name", "address", "connect_timeout", "command_timeout", "content_timeout", "on_failure"};
constexpr std::array<std::string_view, 8> kBounceKeys{"smarthost",
                                                      "smarthost_port",
                                                      "smarthost_starttls",
                                                      "smarthost_connect_timeout",
                                                      "smarthost_command_timeout",
                                                      "smarthost_data_timeout",
                                                      "dsn_sender",
                                                      "delay_warning"};
constexpr std::array<std::string_view, 6> kFleetKeys{"redis",   "node",      "key_prefix",
                                                     "timeout", "lease_ttl", "urgent_class"};
constexpr std::array<std::string_view, 1> kXferKeys{"peers"};
constexpr std::array<std::string_view, 2> kMetricsKeys{"address", "port"};
constexpr std::array<std::string_view, 2> kLoggingKeys{"level", "format"};

struct Section {
    std::string_view path;
    Keys keys;
};
constexpr std::array<Section, 17> kSections{{{"", kTopKeys},
                                             {"listeners[]", kListenerKeys},
                                             {"directory", kDirectoryKeys},
                                             {"limits", kLimitsKeys},
                                             {"spool", kSpoolKeys},
                                             {"classes[]", kClassKeys},
                                             {"rules[]", kRuleKeys},
                                             {"rules[].headers[]", kHeaderTestKeys},
                                             {"mailstores[]", kMailstoreKeys},
                                             {"mailstores[].fleet", kMailstoreFleetKeys},
                                             {"drain", kDrainKeys},
                                             {"milters[]", kMilterKeys},
                                             {"bounces", kBounceKeys},
                                             {"fleet", kFleetKeys},
                                             {"xfer", kXferKeys},
                                             {"metrics", kMetricsKeys},
                                             {"logging", kLoggingKeys}}};

// ---- mappings ----

// A mapping with a fixed set of keys: unknown and duplicate keys are refused up front
// (before any value is read, so a misspelt key is reported as such and not as "missing").
class MapReader {
public:
    MapReader(const YAML::Node& node, std::string path, Keys allowed)
        : node_(node), path_(std::move(path)) {
        if (node.IsNull()) {
            return; // "limits:" with nothing under it is an empty mapping
        }
        if (!node.IsMap()) {
            bad(node, fmt::format("{}: expected a mapping, got {}", where(), type_name(node)));
        }
        for (auto it = node.begin(); it != node.end(); ++it) {
            const YAML::Node key = it->first;
            if (!key.IsScalar()) {
                bad(key, fmt::format("{}: keys must be plain names", where()));
            }
            const std::string& name = key.Scalar();
            if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
                std::string hint;
                for (const auto a : allowed) {
                    if (edit_distance(name, a) <= 2) {
                        hint = fmt::format(" (did you mean \"{}\"?)", a);
                        break;
                    }
                }
                bad(key, fmt::format("unknown key \"{}\" in {}{}", name, where(), hint));
            }
            for (const auto& e : entries_) {
                if (e.name == name) {
                    bad(key, fmt::format("duplicate key \"{}\" in {}", name, where()));
                }
            }
            entries_.push_back(Entry{name, key, it->second});
        }
    }

    const YAML::Node* find(std::string_view key) const {
        for (const auto& e : entries_) {
            if (e.name == key) {
                return &e.value;
            }
        }
        return nullptr;
    }
    const YAML::Node& require(std::string_view key) const {
        const YAML::Node* n = find(key);
        if (n == nullptr) {
            bad(node_, fmt::format("missing required key \"{}\" in {}", key, where()));
        }
        return *n;
    }
    bool has(std::string_view key) const { return find(key) != nullptr; }
    // Where a problem with `key` is reported: its value, else the mapping itself.
    YAML::Mark mark(std::string_view key) const {
        const YAML::Node* n = find(key);
        return n != nullptr ? n->Mark() : node_.Mark();
    }
    std::string child(std::string_view key) const {
        return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
    }
    std::string where() const { return path_.empty() ? "the top level" : path_; }

    void str(std::string_view key, std::string& out) const {
        if (const auto* n = find(key)) {
            out = get_string(*n, child(key));
        }
    }
    template <typename T>
    void uint(std::string_view key, T& out, std::uint64_t min = 0,
              std::uint64_t max = std::numeric_limits<T>::max()) const {
        if (const auto* n = find(key)) {
            out = static_cast<T>(get_uint(*n, child(key), min, max));
        }
    }
    void port(std::string_view key, std::uint16_t& out, bool zero_ok) const {
        uint(key, out, zero_ok ? 0 : 1, 65535);
    }
    void size(std::string_view key, std::uint64_t& out, std::uint64_t min = 0) const {
        if (const auto* n = find(key)) {
            out = get_size(*n, child(key));
            if (out < min) {
                bad(*n, fmt::format("{}: must be at least {} bytes", child(key), min));
            }
        }
    }
    void millis(std::string_view key, Millis& out, bool zero_ok = false) const {
        if (const auto* n = find(key)) {
            out = get_millis(*n, child(key));
            if (!zero_ok && out.count() == 0) {
                bad(*n, fmt::format("{}: must be greater than zero", child(key)));
            }
        }
    }
    void seconds(std::string_view key, Seconds& out) const {
        if (const auto* n = find(key)) {
            out = get_seconds(*n, child(key));
            if (out.count() == 0) {
                bad(*n, fmt::format("{}: must be greater than zero", child(key)));
            }
        }
    }
    void boolean(std::string_view key, bool& out) const {
        if (const auto* n = find(key)) {
            out = get_bool(*n, child(key));
        }
    }

private:
    struct Entry {
        std::string name;
        YAML::Node key;
        YAML::Node value;
    };
    YAML::Node node_;
    std::string path_;
    std::vector<Entry> entries_;
};

class Builder {
public:
    explicit Builder(fs::path base) : base_(std::move(base)) {}

    Config build(const YAML::Node& root) {
        if (!root.IsMap() && !root.IsNull()) {
            bad(root, fmt::format("the top level must be a mapping, got {}", type_name(root)));
        }
        const MapReader top(root, "", kTopKeys);
        Config c;
        top.str("hostname", c.hostname);
        if (!valid_domain(c.hostname)) {
            bad(top.mark("hostname"),
                fmt::format("hostname: \"{}\" is not a host name", c.hostname));
        }
        top.str("authserv_id", c.authserv_id);
        if (!c.authserv_id.empty() &&
            !std::all_of(c.authserv_id.begin(), c.authserv_id.end(), [](unsigned char ch) {
                return ch > ' ' && ch < 127 && ch != ';' && ch != '(' && ch != '"';
            })) {
            bad(top.mark("authserv_id"),
                fmt::format("authserv_id: \"{}\" is not a token (RFC 8601 2.2)", c.authserv_id));
        }
        top.str("user", c.user);
        if (const auto* n = top.find("listeners")) {
            c.listeners = listeners(*n);
        }
        local_domains(top.require("local_domains"), c);
        if (const auto* n = top.find("directory")) {
            c.directory = directory(*n, c);
        }
        if (const auto* n = top.find("limits")) {
            c.limits = limits(*n);
        }
        if (const auto* n = top.find("spool")) {
            c.spool = spool(*n);
        }
        if (const auto* n = top.find("classes")) {
            c.classes = classes(*n);
        }
        top.str("default_class", c.default_class);
        if (!c.class_id(c.default_class)) {
            const YAML::Mark m =
                top.has("default_class") ? top.mark("default_class") : top.mark("classes");
            bad(m, fmt::format("default_class: \"{}\" is not among the classes", c.default_class));
        }
        if (const auto* n = top.find("rules")) {
            c.rules = rules(*n, c);
        }
        if (const auto* n = top.find("mailstores")) {
            c.mailstores = mailstores(*n, c);
        }
        if (const auto* n = top.find("drain")) {
            c.drain = drain(*n, c);
        }
        if (const auto* n = top.find("milters")) {
            c.milters = milters(*n);
        }
        if (const auto* n = top.find("bounces")) {
            c.bounces = bounces(*n);
        }
        c.fleet.node = c.hostname;
        c.fleet.urgent_class = c.classes.front().name;
        if (const auto* n = top.find("fleet")) {
            c.fleet = fleet(*n, c);
        }
        if (!c.fleet.coordinated()) {
            for (std::size_t i = 0; i < c.mailstores.size(); ++i) {
                if (c.mailstores[i].fleet.limited()) {
                    bad(top.mark("mailstores"),
                        fmt::format("mailstores[{}].fleet: fleet limits need fleet.redis", i));
                }
            }
        }
        smarthost_not_ours(top, c);
        if (const auto* n = top.find("xfer")) {
            const MapReader m(*n, "xfer", kXferKeys);
            if (const auto* peers = m.find("peers")) {
                c.xfer.peers = get_strings(*peers, m.child("peers"));
                for (std::size_t i = 0; i < c.xfer.peers.size(); ++i) {
                    if (auto cidr = parse_cidr(c.xfer.peers[i]); !cidr) {
                        bad(*peers, fmt::format("xfer.peers[{}]: {}", i, cidr.error().message));
                    }
                }
            }
        }
        if (const auto* n = top.find("metrics")) {
            const MapReader m(*n, "metrics", kMetricsKeys);
            m.str("address", c.metrics.address);
            check_ip(m, "address", c.metrics.address);
            m.port("port", c.metrics.port, true);
        }
        if (const auto* n = top.find("logging")) {
            const MapReader m(*n, "logging", kLoggingKeys);
            m.str("level", c.log_level);
            log::Level level{};
            if (!log::parse_level(c.log_level, level)) {
                bad(m.mark("level"), fmt::format("logging.level: \"{}\" is not one of debug, "
                                                 "info, warn, error",
                                                 c.log_level));
            }
            m.str("format", c.log_format);
            log::Format format{};
            if (!log::parse_format(c.log_format, format)) {
                bad(m.mark("format"),
                    fmt::format("logging.format: \"{}\" is not one of keyvalue, postfix",
                                c.log_format));
            }
        }
        return c;
    }

private:
    std::string path_value(const MapReader& m, std::string_view key, std::string current) const {
        m.str(key, current);
        if (current.empty() || base_.empty()) {
            return current;
        }
        const fs::path p(current);
        return p.is_absolute() ? current : (base_ / p).lexically_normal().string();
    }

    static void check_ip(const MapReader& m, std::string_view key, const std::string& value) {
        // Plain literals only: the brackets and "IPv6:" that parse_ip also takes are SMTP
        // syntax, and a socket cannot bind them.
        if (!parse_ip(value) || value.front() == '[' || ascii_lower(value).rfind("ipv6:", 0) == 0) {
            bad(m.mark(key), fmt::format("{}: \"{}\" is not an IP address", m.child(key), value));
        }
    }

    std::vector<ListenerConfig> listeners(const YAML::Node& n) const {
        check_sequence(n, "listeners");
        if (n.size() == 0) {
            bad(n, "listeners: at least one listener is needed");
        }
        std::vector<ListenerConfig> out;
        std::set<std::pair<std::string, std::uint16_t>> seen;
        for (std::size_t i = 0; i < n.size(); ++i) {
            const MapReader m(n[i], fmt::format("listeners[{}]", i), kListenerKeys);
            ListenerConfig l;
            m.str("address", l.address);
            check_ip(m, "address", l.address);
            m.port("port", l.port, true);
            l.tls_certificate = path_value(m, "tls_certificate", l.tls_certificate);
            l.tls_key = path_value(m, "tls_key", l.tls_key);
            if (l.tls_certificate.empty() != l.tls_key.empty()) {
                bad(n[i], fmt::format("listeners[{}]: tls_certificate and tls_key go together", i));
            }
            m.boolean("proxy_protocol", l.proxy_protocol);
            if (const auto* nets = m.find("trusted_proxies")) {
                if (!l.proxy_protocol) {
                    bad(*nets, fmt::format("listeners[{}].trusted_proxies: applies only with "
                                           "proxy_protocol: true",
                                           i));
                }
                l.trusted_proxies = cidr_list(*nets, m.child("trusted_proxies"));
            }
            if (l.proxy_protocol && l.trusted_proxies.empty()) {
                bad(m.mark("proxy_protocol"),
                    fmt::format("listeners[{}]: proxy_protocol needs trusted_proxies (the "
                                "networks of the load balancers)",
                                i));
            }
            if (l.port != 0 && !seen.emplace(l.address, l.port).second) {
                bad(n[i],
                    fmt::format("listeners[{}]: {} port {} is listed twice", i, l.address, l.port));
            }
            out.push_back(std::move(l));
        }
        return out;
    }

    static void local_domains(const YAML::Node& n, Config& c) {
        const auto domains = get_strings(n, "local_domains");
        if (domains.empty()) {
            bad(n, "local_domains: at least one domain is needed");
        }
        for (std::size_t i = 0; i < domains.size(); ++i) {
            const std::string d = ascii_lower(domains[i]);
            const YAML::Mark mark = n.IsSequence() ? n[i].Mark() : n.Mark();
            if (!valid_domain(d)) {
                bad(mark, fmt::format("local_domains[{}]: \"{}\" is not a domain", i, domains[i]));
            }
            if (std::find(c.local_domains.begin(), c.local_domains.end(), d) !=
                c.local_domains.end()) {
                bad(mark, fmt::format("local_domains[{}]: \"{}\" is listed twice", i, d));
            }
            c.local_domains.push_back(d);
        }
    }

    DirectoryConfig directory(const YAML::Node& n, const Config& c) const {
        const MapReader m(n, "directory", kDirectoryKeys);
        DirectoryConfig d;
        d.file = path_value(m, "file", d.file);
        if (const auto* f = m.find("format")) {
            d.format = get_enum<DirectoryFormat>(
                *f, "directory.format",
                {{"list", DirectoryFormat::kList}, {"passwd", DirectoryFormat::kPasswd}});
        }
        if (const auto* w = m.find("when_unavailable")) {
            d.when_unavailable = get_enum<DirectoryMissing>(
                *w, "directory.when_unavailable",
                {{"accept", DirectoryMissing::kAccept}, {"tempfail", DirectoryMissing::kTempFail}});
        }
        m.str("default_domain", d.default_domain);
        d.default_domain = ascii_lower(d.default_domain);
        if (!d.default_domain.empty() && std::find(c.local_domains.begin(), c.local_domains.end(),
                                                   d.default_domain) == c.local_domains.end()) {
            bad(m.mark("default_domain"),
                fmt::format("directory.default_domain: \"{}\" is not among local_domains",
                            d.default_domain));
        }
        m.str("recipient_delimiter", d.recipient_delimiter);
        if (d.recipient_delimiter.size() > 1 || d.recipient_delimiter == "@" ||
            (d.recipient_delimiter.size() == 1 &&
             static_cast<unsigned char>(d.recipient_delimiter[0]) <= ' ')) {
            bad(m.mark("recipient_delimiter"),
                fmt::format("directory.recipient_delimiter: \"{}\" must be one character other "
                            "than @ (or empty for none)",
                            d.recipient_delimiter));
        }
        m.millis("poll_interval", d.poll_interval, true);
        constexpr std::uint64_t kMinDirectoryMap = 1ULL << 20U;
        m.size("map_size", d.map_size, kMinDirectoryMap);
        return d;
    }

    static LimitsConfig limits(const YAML::Node& n) {
        constexpr std::uint64_t kMinLine = 512;     // RFC 5321 4.5.3.1.4
        constexpr std::uint64_t kMaxLine = 1 << 20; // anything longer is an attack
        constexpr std::uint64_t kMinMessage = 1024;
        const MapReader m(n, "limits", kLimitsKeys);
        LimitsConfig l;
        m.size("max_message_size", l.max_message_size, kMinMessage);
        m.uint("max_recipients", l.max_recipients, 1);
        m.uint("max_sessions", l.max_sessions, 1);
        m.uint("max_sessions_per_client", l.max_sessions_per_client, 1);
        m.uint("max_errors", l.max_errors, 1);
        m.uint("max_line_length", l.max_line_length, kMinLine, kMaxLine);
        m.millis("command_timeout", l.command_timeout);
        m.millis("data_timeout", l.data_timeout);
        m.boolean("refuse_early_data", l.refuse_early_data);
        return l;
    }

    SpoolConfig spool(const YAML::Node& n) const {
        constexpr std::uint64_t kMinSpool = 1ULL << 20U;
        const MapReader m(n, "spool", kSpoolKeys);
        SpoolConfig s;
        s.path = path_value(m, "path", s.path);
        if (s.path.empty()) {
            bad(m.mark("path"), "spool.path: must not be empty");
        }
        m.size("max_size", s.max_size, kMinSpool);
        if (const auto* w = m.find("high_watermark")) {
            s.high_watermark = get_double(*w, "spool.high_watermark");
            if (!(s.high_watermark > 0.0 && s.high_watermark <= 1.0)) {
                bad(*w,
                    fmt::format("spool.high_watermark: {} is outside (0, 1]", s.high_watermark));
            }
        }
        m.size("min_free_disk", s.min_free_disk);
        return s;
    }

    static std::vector<ClassConfig> classes(const YAML::Node& n) {
        constexpr std::uint64_t kMaxWeight = 1000;
        check_sequence(n, "classes");
        if (n.size() == 0) {
            bad(n, "classes: at least one class is needed");
        }
        if (n.size() > kMaxClasses) {
            bad(n,
                fmt::format("classes: {} classes, at most {} are allowed", n.size(), kMaxClasses));
        }
        std::vector<ClassConfig> out;
        for (std::size_t i = 0; i < n.size(); ++i) {
            const std::string path = fmt::format("classes[{}]", i);
            const MapReader m(n[i], path, kClassKeys);
            ClassConfig k;
            k.name = get_string(m.require("name"), m.child("name"));
            const bool name_ok =
                !k.name.empty() && std::all_of(k.name.begin(), k.name.end(), [](unsigned char c) {
                    return std::isalnum(c) != 0 || c == '-' || c == '_';
                });
            if (!name_ok) {
                bad(m.mark("name"),
                    fmt::format("{}.name: \"{}\" must be letters, digits, - or _", path, k.name));
            }
            for (const auto& other : out) {
                if (other.name == k.name) {
                    bad(m.mark("name"),
                        fmt::format("{}.name: duplicate class \"{}\"", path, k.name));
                }
            }
            m.uint("weight", k.weight, 1, kMaxWeight);
            m.seconds("retention", k.retention);
            if (const auto* a = m.find("on_expiry")) {
                k.on_expiry = get_enum<ExpiryAction>(*a, m.child("on_expiry"),
                                                     {{"bounce", ExpiryAction::kBounce},
                                                      {"hold", ExpiryAction::kHold},
                                                      {"discard", ExpiryAction::kDiscard}});
            }
            out.push_back(std::move(k));
        }
        return out;
    }

    // A list of CIDR networks (or one), each checked.
    static std::vector<std::string> cidr_list(const YAML::Node& n, const std::string& path) {
        auto nets = get_strings(n, path);
        for (std::size_t j = 0; j < nets.size(); ++j) {
            if (auto cidr = parse_cidr(nets[j]); !cidr) {
                bad(n.IsSequence() ? n[j].Mark() : n.Mark(),
                    fmt::format("{}: {}", path, cidr.error().message));
            }
        }
        return nets;
    }

    static std::vector<std::string> patterns(const MapReader& m, std::string_view key) {
        std::vector<std::string> out;
        if (const auto* n = m.find(key)) {
            out = get_strings(*n, m.child(key));
            for (auto& p : out) {
                const auto at = p.rfind('@');
                const std::string domain =
                    ascii_lower(at == std::string::npos ? p : p.substr(at + 1));
                if (!valid_domain(domain) || (at == 0 && p.size() == 1)) {
                    bad(*n, fmt::format("{}: \"{}\" is not an address, @domain or domain",
                                        m.child(key), p));
                }
                if (at == std::string::npos) {
                    p = domain;
                } else {
                    p.resize(at + 1);
                    p += domain;
                }
            }
        }
        return out;
    }

    static std::vector<ClassRule> rules(const YAML::Node& n, const Config& c) {
        check_sequence(n, "rules");
        std::vector<ClassRule> out;
        for (std::size_t i = 0; i < n.size(); ++i) {
            const std::string path = fmt::format("rules[{}]", i);
            const MapReader m(n[i], path, kRuleKeys);
            ClassRule r;
            r.klass = get_string(m.require("class"), m.child("class"));
            if (!c.class_id(r.klass)) {
                bad(m.mark("class"), fmt::format("{}.class: unknown class \"{}\"", path, r.klass));
            }
            r.sender = patterns(m, "sender");
            r.recipient = patterns(m, "recipient");
            if (const auto* nets = m.find("client_net")) {
                r.client_net = cidr_list(*nets, m.child("client_net"));
            }
            if (const auto* h = m.find("headers")) {
                r.headers = header_tests(*h, m.child("headers"));
            }
            if (const auto* s = m.find("size_over")) {
                r.size_over = get_size(*s, m.child("size_over"));
            }
            if (const auto* s = m.find("size_under")) {
                r.size_under = get_size(*s, m.child("size_under"));
            }
            if (r.size_over && r.size_under && *r.size_under <= *r.size_over + 1) {
                bad(n[i], fmt::format("{}: no size is over {} and under {}", path, *r.size_over,
                                      *r.size_under));
            }
            out.push_back(std::move(r));
        }
        return out;
    }

    static std::vector<HeaderTest> header_tests(const YAML::Node& n, const std::string& path) {
        check_sequence(n, path);
        std::vector<HeaderTest> out;
        for (std::size_t i = 0; i < n.size(); ++i) {
            const std::string p = fmt::format("{}[{}]", path, i);
            const MapReader m(n[i], p, kHeaderTestKeys);
            HeaderTest t;
            t.name = get_string(m.require("name"), m.child("name"));
            const bool name_ok =
                !t.name.empty() && std::all_of(t.name.begin(), t.name.end(), [](unsigned char c) {
                    return c > ' ' && c < 127 && c != ':';
                });
            if (!name_ok) {
                bad(m.mark("name"),
                    fmt::format("{}.name: \"{}\" is not a header field name", p, t.name));
            }
            m.str("regex", t.regex);
            try {
                const std::regex compiled(t.regex, std::regex::ECMAScript | std::regex::icase);
            } catch (const std::regex_error& e) {
                bad(m.mark("regex"), fmt::format("{}.regex: bad regular expression \"{}\": {}", p,
                                                 t.regex, e.what()));
            }
            out.push_back(std::move(t));
        }
        return out;
    }

    std::vector<MailstoreConfig> mailstores(const YAML::Node& n, const Config& c) const {
        check_sequence(n, "mailstores");
        if (n.size() == 0) {
            bad(n, "mailstores: at least one mailstore is needed");
        }
        std::vector<MailstoreConfig> out;
        for (std::size_t i = 0; i < n.size(); ++i) {
            const std::string path = fmt::format("mailstores[{}]", i);
            const MapReader m(n[i], path, kMailstoreKeys);
            MailstoreConfig s;
            s.kind = get_enum<MailstoreKind>(m.require("kind"), m.child("kind"),
                                             {{"maildir", MailstoreKind::kMaildir},
                                              {"lmtp", MailstoreKind::kLmtp},
                                              {"smtp", MailstoreKind::kSmtp}});
            // Keys of another kind are refused: a maildir_root on an LMTP store is a mistake
            // that would otherwise be silently ignored.
            const auto only = [&](std::string_view key, bool applies, std::string_view kinds) {
                if (m.has(key) && !applies) {
                    bad(m.mark(key),
                        fmt::format("{}.{}: applies only to kind {}", path, key, kinds));
                }
            };
            const bool maildir = s.kind == MailstoreKind::kMaildir;
            only("maildir_root", maildir, "maildir");
            for (const auto key :
                 {"host", "port", "connect_timeout", "command_timeout", "data_timeout"}) {
                only(key, !maildir, "lmtp or smtp");
            }
            only("unix_socket", s.kind == MailstoreKind::kLmtp, "lmtp");
            only("starttls", s.kind == MailstoreKind::kSmtp, "smtp");
            if (s.kind == MailstoreKind::kSmtp) {
                s.port = 25;
            }
            m.str("name", s.name);
            if (s.name.empty()) {
                bad(m.mark("name"), fmt::format("{}.name: must not be empty", path));
            }
            for (const auto& other : out) {
                if (other.name == s.name) {
                    bad(m.mark("name"),
                        fmt::format("{}.name: duplicate mailstore \"{}\"", path, s.name));
                }
            }
            s.maildir_root = path_value(m, "maildir_root", s.maildir_root);
            m.str("host", s.host);
            m.port("port", s.port, false);
            s.unix_socket = path_value(m, "unix_socket", s.unix_socket);
            m.boolean("starttls", s.starttls);
            m.millis("connect_timeout", s.connect_timeout);
            m.millis("command_timeout", s.command_timeout);
            m.millis("data_timeout", s.data_timeout);
            if (const auto* f = m.find("fleet")) {
                s.fleet = mailstore_fleet(*f, m.child("fleet"));
            }
            if (maildir && s.maildir_root.empty()) {
                bad(n[i], fmt::format("{}: maildir_root must not be empty", path));
            }
            if (!maildir && s.host.empty() && s.unix_socket.empty()) {
                bad(n[i], fmt::format("{}: host (or unix_socket) is needed", path));
            }
            if (const auto* d = m.find("domains")) {
                s.domains = mailstore_domains(*d, path, c, out);
                if (s.domains.empty()) {
                    bad(*d,
                        fmt::format("{}.domains: list at least one domain, or leave the key out "
                                    "to make this the default mailstore",
                                    path));
                }
            } else {
                for (const auto& other : out) {
                    if (other.domains.empty()) {
                        bad(n[i],
                            fmt::format("{}: a second mailstore without domains would never be "
                                        "used; \"{}\" already takes every domain not listed "
                                        "elsewhere",
                                        path, other.name));
                    }
                }
            }
            out.push_back(std::move(s));
        }
        const bool has_default = std::any_of(
            out.begin(), out.end(), [](const MailstoreConfig& s) { return s.domains.empty(); });
        if (!has_default) {
            for (const auto& d : c.local_domains) {
                const bool routed =
                    std::any_of(out.begin(), out.end(), [&](const MailstoreConfig& s) {
                        return std::find(s.domains.begin(), s.domains.end(), d) != s.domains.end();
                    });
                if (!routed) {
                    bad(n,
                        fmt::format("mailstores: local domain \"{}\" goes to no mailstore; list it "
                                    "under one's domains, or leave one without domains as the "
                                    "default",
                                    d));
                }
            }
        }
        return out;
    }

    static std::vector<std::string> mailstore_domains(const YAML::Node& n, const std::string& path,
                                                      const Config& c,
                                                      const std::vector<MailstoreConfig>& before) {
        const auto domains = get_strings(n, path + ".domains");
        std::vector<std::string> out;
        for (std::size_t i = 0; i < domains.size(); ++i) {
            const std::string d = ascii_lower(domains[i]);
            const YAML::Mark mark = n.IsSequence() ? n[i].Mark() : n.Mark();
            if (std::find(c.local_domains.begin(), c.local_domains.end(), d) ==
                c.local_domains.end()) {
                bad(mark,
                    fmt::format("{}.domains[{}]: \"{}\" is not among local_domains (mail for it "
                                "is never accepted)",
                                path, i, domains[i]));
            }
            if (std::find(out.begin(), out.end(), d) != out.end()) {
                bad(mark, fmt::format("{}.domains[{}]: \"{}\" is listed twice", path, i, d));
            }
            for (const auto& other : before) {
                if (std::find(other.domains.begin(), other.domains.end(), d) !=
                    other.domains.end()) {
                    bad(mark, fmt::format("{}.domains[{}]: \"{}\" already goes to mailstore \"{}\"",
                                          path, i, d, other.name));
                }
            }
            out.push_back(d);
        }
        return out;
    }

    static DrainConfig drain(const YAML::Node& n, const Config& c) {
        const MapReader m(n, "drain", kDrainKeys);
        DrainConfig d;
        m.uint("max_concurrency", d.max_concurrency, 1, 100000);
        m.uint("initial_concurrency", d.initial_concurrency, 1, 100000);
        if (d.initial_concurrency > d.max_concurrency) {
            bad(m.mark("initial_concurrency"),
                fmt::format("drain.initial_concurrency: {} is above max_concurrency {}",
                            d.initial_concurrency, d.max_concurrency));
        }
        if (const auto* r = m.find("max_rate")) {
            d.max_rate = get_double(*r, "drain.max_rate");
            if (d.max_rate < 0) {
                bad(*r, "drain.max_rate: must not be negative (0 = unlimited)");
            }
        }
        m.str("strict_class", d.strict_class);
        if (!d.strict_class.empty() && !c.class_id(d.strict_class)) {
            bad(m.mark("strict_class"),
                fmt::format("drain.strict_class: unknown class \"{}\"", d.strict_class));
        }
        m.millis("breaker_min_backoff", d.breaker_min_backoff);
        m.millis("breaker_max_backoff", d.breaker_max_backoff);
        if (d.breaker_min_backoff > d.breaker_max_backoff) {
            bad(m.mark("breaker_min_backoff"),
                "drain.breaker_min_backoff: is above breaker_max_backoff");
        }
        m.uint("breaker_failures", d.breaker_failures, 1);
        m.millis("retry_min", d.retry_min);
        m.millis("retry_max", d.retry_max);
        if (d.retry_min > d.retry_max) {
            bad(m.mark("retry_min"), "drain.retry_min: is above retry_max");
        }
        m.uint("max_per_recipient", d.max_per_recipient, 1);
        return d;
    }

    static MailstoreFleetConfig mailstore_fleet(const YAML::Node& n, const std::string& path) {
        const MapReader m(n, path, kMailstoreFleetKeys);
        MailstoreFleetConfig f;
        m.uint("max_concurrency", f.max_concurrency, 0, 1000000);
        if (const auto* r = m.find("max_rate")) {
            f.max_rate = get_double(*r, m.child("max_rate"));
            if (f.max_rate < 0) {
                bad(*r, fmt::format("{}: must not be negative (0 = no fleet rate limit)",
                                    m.child("max_rate")));
            }
        }
        m.uint("urgent_reserve", f.urgent_reserve, 0, 1000000);
        if (f.urgent_reserve > 0 && f.urgent_reserve >= f.max_concurrency) {
            bad(m.mark("urgent_reserve"),
                fmt::format("{}: {} leaves no slot for the other classes (max_concurrency {})",
                            m.child("urgent_reserve"), f.urgent_reserve, f.max_concurrency));
        }
        return f;
    }

    FleetConfig fleet(const YAML::Node& n, const Config& c) const {
        const MapReader m(n, "fleet", kFleetKeys);
        FleetConfig f;
        redis_address(m, f);
        f.node = c.hostname;
        m.str("node", f.node);
        const auto name_char = [](unsigned char ch) {
            return std::isalnum(ch) != 0 || ch == '-' || ch == '_' || ch == '.';
        };
        if (f.node.empty() || f.node.size() > 64 ||
            !std::all_of(f.node.begin(), f.node.end(), name_char)) {
            bad(m.mark("node"), fmt::format("fleet.node: \"{}\" must be 1 to 64 letters, digits, "
                                            "'-', '_' or '.'",
                                            f.node));
        }
        m.str("key_prefix", f.key_prefix);
        if (f.key_prefix.size() > 64 ||
            std::any_of(f.key_prefix.begin(), f.key_prefix.end(),
                        [](unsigned char ch) { return ch <= ' ' || ch >= 127; })) {
            bad(m.mark("key_prefix"),
                "fleet.key_prefix: at most 64 printable characters without spaces");
        }
        m.millis("timeout", f.timeout);
        m.millis("lease_ttl", f.lease_ttl);
        if (f.lease_ttl < 4 * f.timeout) {
            bad(m.mark("lease_ttl"),
                fmt::format("fleet.lease_ttl: must be at least four times fleet.timeout ({} ms): "
                            "a lease is renewed several times before it expires",
                            4 * f.timeout.count()));
        }
        f.urgent_class = c.classes.front().name;
        m.str("urgent_class", f.urgent_class);
        if (!c.class_id(f.urgent_class)) {
            bad(m.mark("urgent_class"),
                fmt::format("fleet.urgent_class: unknown class \"{}\"", f.urgent_class));
        }
        return f;
    }

    // "host:port", "[v6]:port", "host" (port 6379), or a Unix socket: "unix:PATH" or a
    // path with a '/' in it; empty = no Redis.
    void redis_address(const MapReader& m, FleetConfig& f) const {
        std::string text;
        m.str("redis", text);
        if (text.empty()) {
            return;
        }
        constexpr std::string_view kUnix = "unix:";
        if (text.rfind(kUnix, 0) == 0 || text.find('/') != std::string::npos) {
            std::string path = text.rfind(kUnix, 0) == 0 ? text.substr(kUnix.size()) : text;
            if (path.empty()) {
                bad(m.mark("redis"), "fleet.redis: the socket path is empty");
            }
            const fs::path p(path);
            f.redis_socket =
                p.is_absolute() || base_.empty() ? path : (base_ / p).lexically_normal().string();
            return;
        }
        const auto parts = host_port::split(text);
        if (!parts) {
            bad(m.mark("redis"),
                parts.error() == host_port::SplitError::kUnclosedBracket
                    ? fmt::format("fleet.redis: \"{}\" lacks a ']'", text)
                    : fmt::format("fleet.redis: \"{}\" is not [address]:port", text));
        }
        const std::string host(parts->host);
        if (host.empty() || (!parse_ip(host) && !valid_domain(host))) {
            bad(m.mark("redis"),
                fmt::format("fleet.redis: \"{}\" is not host:port or a socket path", text));
        }
        f.redis_host = host;
        if (!parts->port.empty()) {
            const auto port = host_port::parse_port(parts->port);
            if (!port) {
                bad(m.mark("redis"), fmt::format("fleet.redis: \"{}\" is not a port", parts->port));
            }
            f.redis_port = *port;
        }
    }

    std::vector<MilterConfig> milters(const YAML::Node& n) const {
        check_sequence(n, "milters");
        std::vector<MilterConfig> out;
        for (std::size_t i = 0; i < n.size(); ++i) {
            const std::string path = fmt::format("milters[{}]", i);
            const MapReader m(n[i], path, kMilterKeys);
            MilterConfig f;
            f.name = get_string(m.require("name"), m.child("name"));
            const bool name_ok =
                !f.name.empty() && std::all_of(f.name.begin(), f.name.end(), [](unsigned char c) {
                    return std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.';
                });
            if (!name_ok) {
                bad(m.mark("name"), fmt::format("{}.name: \"{}\" must be letters, digits, -, _ "
                                                "or .",
                                                path, f.name));
            }
            for (const auto& other : out) {
                if (other.name == f.name) {
                    bad(m.mark("name"),
                        fmt::format("{}.name: duplicate milter \"{}\"", path, f.name));
                }
            }
            f.address = get_string(m.require("address"), m.child("address"));
            milter_address(m, path, f);
            m.millis("connect_timeout", f.connect_timeout);
            m.millis("command_timeout", f.command_timeout);
            m.millis("content_timeout", f.content_timeout);
            if (const auto* a = m.find("on_failure")) {
                f.on_failure = get_enum<MilterFailure>(
                    *a, m.child("on_failure"),
                    {{"tempfail", MilterFailure::kTempFail}, {"accept", MilterFailure::kAccept}});
            }
            out.push_back(std::move(f));
        }
        return out;
    }

    // Postfix's syntax: "inet:host:port" (an IPv6 address in brackets) or "unix:/path"
    // (also "local:"); a relative path is taken from the configuration's directory.
    void milter_address(const MapReader& m, const std::string& path, MilterConfig& f) const {
        const std::string& a = f.address;
        const auto refuse = [&](std::string_view why) {
            bad(m.mark("address"),
                fmt::format("{}.address: \"{}\" {} (inet:host:port or unix:/path)", path, a, why));
        };
        for (const std::string_view prefix : {"unix:", "local:"}) {
            if (a.starts_with(prefix)) {
                if (a.size() == prefix.size()) {
                    refuse("names no socket");
                }
                const fs::path p(a.substr(prefix.size()));
                f.unix_socket = p.is_absolute() || base_.empty()
                                    ? p.string()
                                    : (base_ / p).lexically_normal().string();
                return;
            }
        }
        if (!a.starts_with("inet:")) {
            refuse("has no inet: or unix: prefix");
        }
        const auto parts = host_port::split(std::string_view(a).substr(5));
        if (!parts || !parts->has_port || parts->host.empty()) {
            refuse("has no host:port");
        }
        const std::string host(parts->host);
        const auto port = host_port::parse_port(parts->port);
        if (!port) {
            refuse("has no port from 1 to 65535");
        }
        if (!parse_ip(host) && !valid_domain(ascii_lower(host))) {
            refuse("has a host that is no address or name");
        }
        f.host = host;
        f.port = *port;
    }

    // A smarthost that is one of our own listeners gets every DSN back, refuses it as
    // relaying, and the DSN is lost: refused here, with the listener named.
    static void smarthost_not_ours(const MapReader& top, const Config& c) {
        const BounceConfig& b = c.bounces;
        const std::string host = ascii_lower(b.smarthost);
        const bool local = host == "localhost" || host.starts_with("127.") || host == "::1" ||
                           host == "0.0.0.0" || host == "::" || host == ascii_lower(c.hostname);
        for (std::size_t i = 0; i < c.listeners.size(); ++i) {
            const ListenerConfig& l = c.listeners[i];
            const bool wildcard = l.address == "0.0.0.0" || l.address == "::";
            if (l.port == 0 || l.port != b.smarthost_port) {
                continue;
            }
            if (ascii_lower(l.address) == host || (wildcard && local)) {
                bad(top.has("bounces") ? top.mark("bounces") : top.mark("listeners"),
                    fmt::format("bounces.smarthost: {}:{} is our own listener listeners[{}] "
                                "({}:{}): every DSN would come back to us and be refused as "
                                "relaying; set bounces.smarthost to the relay that sends "
                                "our mail out",
                                b.smarthost, b.smarthost_port, i, l.address, l.port));
            }
        }
    }

    static BounceConfig bounces(const YAML::Node& n) {
        const MapReader m(n, "bounces", kBounceKeys);
        BounceConfig b;
        m.str("smarthost", b.smarthost);
        if (b.smarthost.empty()) {
            bad(m.mark("smarthost"), "bounces.smarthost: must not be empty");
        }
        m.port("smarthost_port", b.smarthost_port, false);
        m.boolean("smarthost_starttls", b.smarthost_starttls);
        m.millis("smarthost_connect_timeout", b.smarthost_connect_timeout);
        m.millis("smarthost_command_timeout", b.smarthost_command_timeout);
        m.millis("smarthost_data_timeout", b.smarthost_data_timeout);
        m.str("dsn_sender", b.dsn_sender);
        const bool sender_ok =
            !b.dsn_sender.empty() &&
            std::none_of(b.dsn_sender.begin(), b.dsn_sender.end(), [](unsigned char c) {
                return c <= ' ' || c >= 127 || c == '<' || c == '>';
            });
        if (!sender_ok) {
            bad(m.mark("dsn_sender"),
                fmt::format("bounces.dsn_sender: \"{}\" is not a local part or address",
                            b.dsn_sender));
        }
        if (const auto* w = m.find("delay_warning")) {
            if (w->IsScalar() && ascii_lower(w->Scalar()) == "off") {
                b.delay_warning.reset();
            } else {
                b.delay_warning = get_seconds(*w, "bounces.delay_warning");
                if (b.delay_warning->count() == 0) {
                    bad(*w, "bounces.delay_warning: write \"off\" to turn warnings off");
                }
            }
        }
        return b;
    }

    fs::path base_;
};

std::string where(const std::string& name, const YAML::Mark& mark) {
    // Only an empty document has no position; its problems are "at the start".
    if (mark.is_null()) {
        return fmt::format("{}:1:1", name);
    }
    return fmt::format("{}:{}:{}", name, mark.line + 1, mark.column + 1);
}

Result<std::shared_ptr<const Config>>
parse_with_base(const std::string& text, const std::string& name, const fs::path& base) {
    try {
        const YAML::Node root = YAML::Load(text);
        auto config = std::make_shared<Config>(Builder(base).build(root));
        config->source_file = name;
        return std::shared_ptr<const Config>(std::move(config));
    } catch (const LoadError& e) {
        return fail(ErrorKind::kConfig, fmt::format("{}: {}", where(name, e.mark), e.message));
    } catch (const YAML::Exception& e) {
        return fail(ErrorKind::kConfig, fmt::format("{}: {}", where(name, e.mark), e.msg));
    } catch (const std::exception& e) {
        return fail(ErrorKind::kConfig, fmt::format("{}: {}", name, e.what()));
    }
}

} // namespace

std::vector<std::string> config_schema_keys() {
    std::vector<std::string> out;
    for (const auto& section : kSections) {
        for (const auto key : section.keys) {
            out.push_back(section.path.empty() ? std::string(key)
                                               : fmt::format("{}.{}", section.path, key));
        }
    }
    return out;
}

Result<std::shared_ptr<const Config>> parse_config(const std::string& text,
                                                   const std::string& name) {
    return parse_with_base(text, name, fs::path(name).parent_path());
}

Result<std::shared_ptr<const Config>> load_config(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return fail(ErrorKind::kConfig,
                    fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) {
        return fail(ErrorKind::kConfig, fmt::format("{}: cannot read", path));
    }
    std::error_code ec;
    const fs::path absolute = fs::absolute(path, ec);
    return parse_with_base(text.str(), path,
                           ec ? fs::path(path).parent_path() : absolute.parent_path());
}

} // namespace spoold::policy
