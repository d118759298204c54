#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "policy/config.hpp"
#include "policy/config_reload.hpp"
#include "tests/support/config_text.hpp"

using namespace spoold;
using namespace spoold::policy;

namespace {

std::vector<std::string> between(const std::string& before, const std::string& after) {
    return restart_needed(*spoold::testing::parsed_config(before),
                          *spoold::testing::parsed_config(after));
}

const std::string kBase = R"(
local_domains: [example.com, example.net]
listeners: [{address: 127.0.0.1, port: 2525}]
mailstores:
  - {name: a, kind: lmtp, host: 10.0.0.1, domains: [example.net]}
  - {name: b, kind: maildir, maildir_root: /var/mail}
metrics: {port: 9100}
)";

} // namespace

TEST_CASE("every key of the schema has exactly one reload rule, and every rule is a key") {
    const auto keys = config_schema_keys();
    const auto rules = reload_rules();
    std::vector<std::string> ruled;
    for (const auto& rule : rules) {
        ruled.emplace_back(rule.key);
    }
    for (const auto& key : keys) {
        CAPTURE(key);
        CHECK(std::count(ruled.begin(), ruled.end(), key) == 1);
    }
    for (const auto& rule : rules) {
        const std::string key(rule.key);
        CAPTURE(key);
        CHECK(std::find(keys.begin(), keys.end(), key) != keys.end());
        // A restart key can be compared; the others have nothing to compare.
        CHECK((rule.on_reload == OnReload::kRestart) == (rule.value != nullptr));
        if (rule.on_reload == OnReload::kByKeys) {
            CHECK(std::any_of(keys.begin(), keys.end(),
                              [&](const std::string& k) { return k.starts_with(key + "."); }));
        }
    }
}

TEST_CASE("a reload that changes only keys a reload applies needs no restart") {
    const std::string after = R"(
local_domains: [example.com, example.net, example.org]
hostname: localhost
directory: {file: /etc/spoold/recipients, when_unavailable: accept}
limits: {max_recipients: 10, command_timeout: 1m}
spool: {high_watermark: 0.5}
classes: [{name: normal, retention: 2d}, {name: bulk, weight: 2, on_expiry: hold}]
rules: [{class: bulk, headers: [{name: List-Id}]}]
mailstores:
  - {name: b, kind: maildir, maildir_root: /var/mail, domains: [example.com]}
  - {name: a, kind: lmtp, host: 10.0.0.1}
drain: {max_concurrency: 4, max_rate: 10}
bounces: {dsn_sender: postmaster, delay_warning: 4h}
metrics: {port: 9100}
logging: {level: debug}
listeners: [{address: 127.0.0.1, port: 2525}]
)";
    CHECK(between(kBase, after).empty());
    CHECK(between(kBase, kBase).empty());
}

TEST_CASE("the restart keys a reload changed are named in schema order") {
    std::string after = kBase;
    after.replace(after.find("port: 2525"), 10, "port: 26");
    after.replace(after.find("port: 9100"), 10, "port: 9200");
    after += "user: spoold\nhostname: mx2.example.com\nspool: {max_size: 1GiB}\n";
    CHECK(between(kBase, after) == std::vector<std::string>{"hostname", "user", "listeners[].port",
                                                            "spool.max_size", "metrics.port"});
}

TEST_CASE("a list that gained or lost an item is named once, as the list") {
    std::string more = kBase;
    more.replace(more.find("listeners: ["), 12,
                 "listeners: [{address: 127.0.0.1, port: 2526, tls_certificate: /c, tls_key: "
                 "/k}, ");
    CHECK(between(kBase, more) == std::vector<std::string>{"listeners"});

    std::string renamed = kBase;
    renamed.replace(renamed.find("name: a,"), 8, "name: c,");
    renamed.replace(renamed.find("host: 10.0.0.1"), 14, "host: 10.0.0.2");
    CHECK(between(kBase, renamed) == std::vector<std::string>{"mailstores"});
}

TEST_CASE("a mailstore's connection settings are compared by name, not by position") {
    std::string moved = kBase;
    moved.replace(moved.find("host: 10.0.0.1"), 14, "host: 10.0.0.9, connect_timeout: 3s");
    CHECK(between(kBase, moved) ==
          std::vector<std::string>{"mailstores[].host", "mailstores[].connect_timeout"});
}
