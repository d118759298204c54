#include "policy/config_reload.hpp"

#include <algorithm>
#include <array>
#include <fmt/format.h>

namespace spoold::policy {
namespace {

constexpr OnReload kApplied = OnReload::kApplied;
constexpr OnReload kRestart = OnReload::kRestart;
constexpr OnReload kByKeys = OnReload::kByKeys;

std::string text(const std::string& v) { return v; }
std::string text(std::uint64_t v) { return fmt::format("{}", v); }
std::string text(bool v) { return v ? "true" : "false"; }
std::string text(Millis v) { return fmt::format("{}ms", v.count()); }
std::string text(MailstoreKind v) { return fmt::format("{}", static_cast<int>(v)); }

// Listeners are bound in order: compared item by item.
template <typename Field> std::string listeners(const Config& c, Field field) {
    std::string out;
    for (const auto& l : c.listeners) {
        out += text(field(l)) + '\n';
    }
    return out;
}

// Mailstores are matched by name (the drain keeps a store's connector across a reload
// that only moves domains), so their order in the file does not matter.
template <typename Field> std::string mailstores(const Config& c, Field field) {
    std::vector<std::string> items;
    items.reserve(c.mailstores.size());
    for (const auto& m : c.mailstores) {
        items.push_back(m.name + '=' + text(field(m)));
    }
    std::sort(items.begin(), items.end());
    std::string out;
    for (const auto& i : items) {
        out += i + '\n';
    }
    return out;
}

using L = ListenerConfig;
using M = MailstoreConfig;

const auto kRules = std::to_array<ReloadRule>({
    {"hostname", kRestart, [](const Config& c) { return c.hostname; },
     "the greeting, Received: and DSNs use it at once; LHLO/EHLO to the mailstores and the "
     "smarthost, and Maildir file names, from the next start"},
    {"authserv_id", kApplied},
    {"user", kRestart, [](const Config& c) { return c.user; }},
    {"listeners", kRestart,
     [](const Config& c) { return text(static_cast<std::uint64_t>(c.listeners.size())); },
     "a listener added or removed"},
    {"local_domains", kApplied},
    {"directory", kByKeys},
    {"limits", kByKeys},
    {"spool", kByKeys},
    {"classes", kApplied},
    {"default_class", kApplied},
    {"rules", kApplied},
    {"mailstores", kRestart,
     [](const Config& c) { return mailstores(c, [](const M&) { return std::string(); }); },
     "a mailstore added, removed or renamed"},
    {"drain", kByKeys},
    {"bounces", kByKeys},
    {"fleet", kByKeys},
    {"xfer", kByKeys},
    {"metrics", kByKeys},
    {"logging", kByKeys},
    {"milters", kApplied, nullptr, "new connections ask the new filters; open ones keep theirs"},

    {"listeners[].address", kRestart,
     [](const Config& c) { return listeners(c, [](const L& l) { return l.address; }); }},
    {"listeners[].port", kRestart,
     [](const Config& c) {
         return listeners(c, [](const L& l) { return static_cast<std::uint64_t>(l.port); });
     }},
    {"listeners[].tls_certificate", kRestart,
     [](const Config& c) { return listeners(c, [](const L& l) { return l.tls_certificate; }); }},
    {"listeners[].tls_key", kRestart,
     [](const Config& c) { return listeners(c, [](const L& l) { return l.tls_key; }); }},
    {"listeners[].proxy_protocol", kRestart,
     [](const Config& c) { return listeners(c, [](const L& l) { return l.proxy_protocol; }); }},
    {"listeners[].trusted_proxies", kRestart,
     [](const Config& c) {
         return listeners(c, [](const L& l) {
             std::string out;
             for (const auto& net : l.trusted_proxies) {
                 out += net + ' ';
             }
             return out;
         });
     }},

    {"directory.file", kApplied},
    {"directory.format", kApplied},
    {"directory.when_unavailable", kApplied},
    {"directory.default_domain", kApplied},
    {"directory.recipient_delimiter", kApplied},
    {"directory.poll_interval", kApplied},
    // The directory's LMDB environment is opened once, at the first load, with this map.
    {"directory.map_size", kRestart, [](const Config& c) { return text(c.directory.map_size); }},

    {"limits.max_message_size", kApplied},
    {"limits.max_recipients", kApplied},
    {"limits.max_sessions", kApplied},
    {"limits.max_sessions_per_client", kApplied},
    {"limits.max_errors", kApplied},
    {"limits.max_line_length", kApplied},
    {"limits.command_timeout", kApplied},
    {"limits.data_timeout", kApplied},
    {"limits.refuse_early_data", kApplied},

    {"spool.path", kRestart, [](const Config& c) { return c.spool.path; }},
    {"spool.max_size", kRestart, [](const Config& c) { return text(c.spool.max_size); }},
    {"spool.high_watermark", kApplied},
    {"spool.min_free_disk", kApplied},

    {"classes[].name", kApplied},
    {"classes[].weight", kApplied},
    {"classes[].retention", kApplied},
    {"classes[].on_expiry", kApplied},

    {"rules[].class", kApplied},
    {"rules[].sender", kApplied},
    {"rules[].recipient", kApplied},
    {"rules[].client_net", kApplied},
    {"rules[].headers", kApplied},
    {"rules[].size_over", kApplied},
    {"rules[].size_under", kApplied},
    {"rules[].headers[].name", kApplied},
    {"rules[].headers[].regex", kApplied},

    {"mailstores[].name", kRestart,
     [](const Config& c) { return mailstores(c, [](const M&) { return std::string(); }); }},
    {"mailstores[].domains", kApplied},
    {"mailstores[].kind", kRestart,
     [](const Config& c) { return mailstores(c, [](const M& m) { return m.kind; }); }},
    {"mailstores[].maildir_root", kRestart,
     [](const Config& c) { return mailstores(c, [](const M& m) { return m.maildir_root; }); }},
    {"mailstores[].host", kRestart,
     [](const Config& c) { return mailstores(c, [](const M& m) { return m.host; }); }},
    {"mailstores[].port", kRestart,
     [](const Config& c) {
         return mailstores(c, [](const M& m) { return static_cast<std::uint64_t>(m.port); });
     }},
    {"mailstores[].unix_socket", kRestart,
     [](const Config& c) { return mailstores(c, [](const M& m) { return m.unix_socket; }); }},
    {"mailstores[].starttls", kRestart,
     [](const Config& c) { return mailstores(c, [](const M& m) { return m.starttls; }); }},
    {"mailstores[].connect_timeout", kRestart,
     [](const Config& c) { return mailstores(c, [](const M& m) { return m.connect_timeout; }); }},
    {"mailstores[].command_timeout", kRestart,
     [](const Config& c) { return mailstores(c, [](const M& m) { return m.command_timeout; }); }},
    {"mailstores[].data_timeout", kRestart,
     [](const Config& c) { return mailstores(c, [](const M& m) { return m.data_timeout; }); }},
    {"mailstores[].fleet", kRestart,
     [](const Config& c) { return mailstores(c, [](const M& m) { return m.fleet.limited(); }); },
     "new limits of a store that had a fleet budget already apply at once"},
    {"mailstores[].fleet.max_concurrency", kApplied},
    {"mailstores[].fleet.max_rate", kApplied},
    {"mailstores[].fleet.urgent_reserve", kApplied},

    {"drain.max_concurrency", kApplied},
    {"drain.initial_concurrency", kApplied},
    {"drain.max_rate", kApplied},
    {"drain.strict_class", kApplied},
    {"drain.breaker_min_backoff", kApplied},
    {"drain.breaker_max_backoff", kApplied},
    {"drain.breaker_failures", kApplied},
    {"drain.retry_min", kApplied},
    {"drain.retry_max", kApplied},
    {"drain.max_per_recipient", kApplied},

    {"bounces.smarthost", kRestart, [](const Config& c) { return c.bounces.smarthost; }},
    {"bounces.smarthost_port", kRestart,
     [](const Config& c) { return text(static_cast<std::uint64_t>(c.bounces.smarthost_port)); }},
    {"bounces.smarthost_starttls", kRestart,
     [](const Config& c) { return std::string(c.bounces.smarthost_starttls ? "1" : "0"); }},
    {"bounces.smarthost_connect_timeout", kRestart,
     [](const Config& c) { return text(c.bounces.smarthost_connect_timeout); }},
    {"bounces.smarthost_command_timeout", kRestart,
     [](const Config& c) { return text(c.bounces.smarthost_command_timeout); }},
    {"bounces.smarthost_data_timeout", kRestart,
     [](const Config& c) { return text(c.bounces.smarthost_data_timeout); }},
    {"bounces.dsn_sender", kApplied},
    {"bounces.delay_warning", kApplied},

    {"fleet.redis", kRestart,
     [](const Config& c) { return c.fleet.coordinated() ? c.fleet.redis_address() : ""; }},
    // Without Redis the node name (the hostname by default) is not used.
    {"fleet.node", kRestart,
     [](const Config& c) { return c.fleet.coordinated() ? c.fleet.node : std::string(); }},
    {"fleet.key_prefix", kRestart, [](const Config& c) { return c.fleet.key_prefix; }},
    {"fleet.timeout", kRestart, [](const Config& c) { return text(c.fleet.timeout); }},
    {"fleet.lease_ttl", kRestart, [](const Config& c) { return text(c.fleet.lease_ttl); }},
    {"fleet.urgent_class", kApplied},

    {"xfer.peers", kApplied},
    {"metrics.address", kRestart, [](const Config& c) { return c.metrics.address; }},
    {"metrics.port", kRestart,
     [](const Config& c) { return text(static_cast<std::uint64_t>(c.metrics.port)); }},

    {"logging.level", kApplied},
    {"logging.format", kApplied},

    {"milters[].name", kApplied},
    {"milters[].address", kApplied},
    {"milters[].connect_timeout", kApplied},
    {"milters[].command_timeout", kApplied},
    {"milters[].content_timeout", kApplied},
    {"milters[].on_failure", kApplied},
});

// "listeners" for "listeners[].port": the list whose items the key belongs to.
std::string_view list_of(std::string_view key) {
    const auto brackets = key.find("[]");
    return brackets == std::string_view::npos ? std::string_view() : key.substr(0, brackets);
}

} // namespace

std::span<const ReloadRule> reload_rules() { return kRules; }

std::vector<std::string> restart_needed(const Config& running, const Config& fresh) {
    std::vector<std::string> out;
    std::vector<std::string_view> lists_named;
    for (const ReloadRule& rule : kRules) {
        if (rule.on_reload != OnReload::kRestart || rule.value == nullptr) {
            continue;
        }
        const std::string_view list = list_of(rule.key);
        if (!list.empty() &&
            std::find(lists_named.begin(), lists_named.end(), list) != lists_named.end()) {
            continue; // "listeners" already says it: a listener was added or removed
        }
        if (rule.value(running) != rule.value(fresh)) {
            out.emplace_back(rule.key);
            lists_named.push_back(rule.key);
        }
    }
    return out;
}

} // namespace spoold::policy
