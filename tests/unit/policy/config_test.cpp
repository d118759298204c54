#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

#include "policy/config.hpp"
#include "tests/support/config_text.hpp"

using namespace spoold;
using namespace spoold::policy;
using spoold::testing::error_of;
using namespace std::chrono_literals;

namespace {

const std::string kMinimal = "local_domains: [example.com]\n";

bool starts_with(const std::string& s, const std::string& prefix) {
    return s.rfind(prefix, 0) == 0;
}

} // namespace

TEST_CASE("the sample configuration in etc/ validates") {
    auto config = load_config(SPOOLD_SOURCE_DIR "/etc/spoold.yaml");
    REQUIRE_MESSAGE(config, (config ? "" : config.error().message));
    const Config& c = **config;
    CHECK(c.hostname == "mx1.example.com");
    REQUIRE(c.listeners.size() == 1);
    CHECK(c.listeners[0].address == "127.0.0.1");
    CHECK(c.listeners[0].port == 2525);
    CHECK(c.local_domains == std::vector<std::string>{"example.com", "example.net"});
    CHECK(c.spool.path == "/var/spool/spoold");
    REQUIRE(c.mailstores.size() == 1);
    CHECK(c.mailstores[0].kind == MailstoreKind::kMaildir);
    CHECK(c.mailstores[0].maildir_root == "/var/mail/spoold");
    REQUIRE(c.classes.size() == 3);
    CHECK(c.classes[0].name == "urgent");
    CHECK(c.classes[0].weight == 8);
    CHECK(c.classes[1].weight == 4);
    CHECK(c.classes[2].weight == 1);
    CHECK(c.classes[2].retention == 720h);
    CHECK(c.class_id("normal") == 1);
    CHECK(c.rules.size() == 7);
    CHECK_FALSE(c.bounces.delay_warning);
    CHECK(c.source_file == SPOOLD_SOURCE_DIR "/etc/spoold.yaml");
}

TEST_CASE("a minimal configuration takes the embedded defaults") {
    auto config = parse_config(kMinimal, "test.yaml");
    REQUIRE(config);
    const Config& c = **config;
    CHECK(c.local_domains == std::vector<std::string>{"example.com"});
    CHECK(c.default_class == "normal");
    CHECK(c.classes.size() == 3);
    CHECK(c.limits.max_message_size == 50ULL << 20U);
    CHECK(c.mailstores.size() == 1);
    CHECK(c.directory.file.empty());
    CHECK(c.log_level == "info");
}

TEST_CASE("values with units and every section are read") {
    auto config = parse_config(R"(
hostname: MX.example.org
local_domains: [Example.COM, Shard2.Example.COM]
listeners:
  - {address: "::", port: 25}
  - {address: 0.0.0.0, port: 587, tls_certificate: /etc/c.pem, tls_key: /etc/k.pem}
directory: {file: dir/users, format: passwd, default_domain: example.com,
            when_unavailable: accept, poll_interval: 0}
limits: {max_message_size: 10MB, command_timeout: 90s, max_line_length: 512}
spool: {path: spool, max_size: 1GiB, high_watermark: 1, min_free_disk: 0}
classes:
  - {name: fast, weight: 3, retention: 2h, on_expiry: hold}
  - {name: slow, retention: 1w, on_expiry: discard}
default_class: slow
rules:
  - class: fast
    sender: ["Boss@Example.COM", "@vip.example"]
    client_net: [10.0.0.0/8, "2001:db8::/32"]
    headers: [{name: X-Urgent}]
    size_under: 1MiB
mailstores:
  - {name: dovecot, kind: lmtp, unix_socket: /run/dovecot/lmtp, command_timeout: 30s}
  - {name: relay, kind: smtp, host: relay.example, starttls: no, domains: [SHARD2.example.com]}
drain: {max_concurrency: 8, initial_concurrency: 8, max_rate: 2.5, strict_class: fast,
        retry_min: 30s, retry_max: 30s}
bounces: {smarthost: relay.example, dsn_sender: postmaster@example.com, delay_warning: 4h}
metrics: {port: 9100}
logging: {level: debug}
)",
                               "/etc/spoold/spoold.yaml");
    REQUIRE_MESSAGE(config, (config ? "" : config.error().message));
    const Config& c = **config;
    CHECK(c.hostname == "MX.example.org");
    CHECK(c.local_domains[0] == "example.com");
    CHECK(c.listeners[1].port == 587);
    CHECK(c.listeners[1].tls_key == "/etc/k.pem");
    CHECK(c.directory.file == "/etc/spoold/dir/users");
    CHECK(c.directory.format == DirectoryFormat::kPasswd);
    CHECK(c.directory.when_unavailable == DirectoryMissing::kAccept);
    CHECK(c.directory.poll_interval == 0ms);
    CHECK(c.limits.max_message_size == 10'000'000);
    CHECK(c.limits.command_timeout == 90s);
    CHECK(c.spool.path == "/etc/spoold/spool");
    CHECK(c.spool.high_watermark == 1.0);
    CHECK(c.classes[0].retention == 2h);
    CHECK(c.classes[0].on_expiry == ExpiryAction::kHold);
    CHECK(c.classes[1].weight == 1);
    CHECK(c.classes[1].on_expiry == ExpiryAction::kDiscard);
    CHECK(c.class_id("slow") == 1);
    CHECK_FALSE(c.class_id("normal"));
    REQUIRE(c.rules.size() == 1);
    CHECK(c.rules[0].sender == std::vector<std::string>{"Boss@example.com", "@vip.example"});
    CHECK(c.rules[0].headers[0].regex.empty());
    CHECK(c.rules[0].size_under == 1ULL << 20U);
    CHECK(c.mailstores[0].kind == MailstoreKind::kLmtp);
    CHECK(c.mailstores[0].unix_socket == "/run/dovecot/lmtp");
    CHECK(c.mailstores[1].port == 25);
    CHECK_FALSE(c.mailstores[1].starttls);
    CHECK(c.mailstores[0].domains.empty());
    CHECK(c.mailstores[1].domains == std::vector<std::string>{"shard2.example.com"});
    CHECK(c.drain.max_rate == 2.5);
    CHECK(c.bounces.delay_warning == 4h);
    CHECK(c.metrics.port == 9100);
    CHECK(c.log_level == "debug");
}

TEST_CASE("each kind of mistake is one error with file, line and column") {
    struct Case {
        std::string text;
        std::string expected; // prefix of the message
    };
    const Case cases[] = {
        {"", "test.yaml:1:1: missing required key \"local_domains\""},
        {"local_domains: [a.example]\nhostnme: x\n",
         "test.yaml:2:1: unknown key \"hostnme\" in the top level (did you mean \"hostname\"?)"},
        {"local_domains: [a.example]\nlimits:\n  max_recipients: lots\n",
         "test.yaml:3:19: limits.max_recipients: expected a whole number"},
        {"local_domains: [a.example]\nlimits: [1, 2]\n",
         "test.yaml:2:9: limits: expected a mapping, got a list"},
        {"local_domains: []\n", "test.yaml:1:16: local_domains: at least one domain"},
        {"local_domains: [a.example]\nlisteners:\n  - port: 65536\n",
         "test.yaml:3:11: listeners[0].port: 65536 is out of range (0 to 65535)"},
        {"local_domains: [a.example]\nclasses:\n  - {name: a, weight: 0}\ndefault_class: a\n",
         "test.yaml:3:23: classes[0].weight: 0 is out of range"},
        {"local_domains: [a.example]\nspool:\n  high_watermark: 1.5\n",
         "test.yaml:3:19: spool.high_watermark: 1.5 is outside (0, 1]"},
        {"local_domains: [a.example]\nspool:\n  high_watermark: 0\n",
         "test.yaml:3:19: spool.high_watermark: 0 is outside (0, 1]"},
        {"local_domains: [a.example]\ndrain:\n  breaker_min_backoff: 10m\n  breaker_max_backoff: "
         "1m\n",
         "test.yaml:3:24: drain.breaker_min_backoff: is above breaker_max_backoff"},
        {"local_domains: [a.example]\ndefault_class: express\n",
         "test.yaml:2:16: default_class: \"express\" is not among the classes"},
        {"local_domains: [a.example]\nrules:\n  - class: express\n",
         "test.yaml:3:12: rules[0].class: unknown class \"express\""},
        {"local_domains: [a.example]\nrules:\n  - class: bulk\n    headers:\n      - {name: X, "
         "regex: \"(\"}\n",
         "test.yaml:5:26: rules[0].headers[0].regex: bad regular expression"},
        {"local_domains: [a.example]\nrules:\n  - class: bulk\n    client_net: [10.0.0.0/8, "
         "10.0.0.0/40]\n",
         "test.yaml:4:30: rules[0].client_net: bad prefix length"},
        {"local_domains: [a.example]\nclasses:\n  - name: a\n  - name: a\ndefault_class: a\n",
         "test.yaml:4:11: classes[1].name: duplicate class \"a\""},
        {"local_domains: [a.example]\nclasses: [{name: c0}, {name: c1}, {name: c2}, {name: "
         "c3}, {name: c4}, {name: c5}, {name: c6}, {name: c7}, {name: c8}, {name: c9}, "
         "{name: c10}, {name: c11}, {name: c12}, {name: c13}, {name: c14}, {name: c15}, "
         "{name: c16}]\n",
         "test.yaml:2:10: classes: 17 classes, at most 16 are allowed"},
        {"local_domains: [a.example]\nclasses:\n  - weight: 2\n",
         "test.yaml:3:5: missing required key \"name\" in classes[0]"},
        {"local_domains: [a.example]\nclasses:\n  - {name: a, retention: 30}\n",
         "test.yaml:3:26: classes[0].retention: duration needs a unit"},
        {"local_domains: [a.example]\nlimits: {max_message_size: 5XB}\n",
         "test.yaml:2:28: limits.max_message_size: unknown size unit"},
        {"local_domains: [a.example]\nmailstores:\n  - {kind: lmtp, maildir_root: /x}\n",
         "test.yaml:3:32: mailstores[0].maildir_root: applies only to kind maildir"},
        {"local_domains: [a.example]\nmailstores:\n  - {kind: nfs}\n",
         "test.yaml:3:12: mailstores[0].kind: \"nfs\" is not one of maildir, lmtp, smtp"},
        {"local_domains: [a.example]\nlocal_domains: [b.example]\n",
         "test.yaml:2:1: duplicate key \"local_domains\""},
        {"local_domains: [a.example\n", "test.yaml:2:1: "},
        {"local_domains: [a.example]\nlisteners:\n  - {address: localhost}\n",
         "test.yaml:3:15: listeners[0].address: \"localhost\" is not an IP address"},
        {"local_domains: [a.example]\nlisteners:\n  - {address: \"[::1]\"}\n",
         "test.yaml:3:15: listeners[0].address: \"[::1]\" is not an IP address"},
        {"local_domains: [a.example]\nlisteners:\n  - {tls_key: k.pem}\n",
         "test.yaml:3:5: listeners[0]: tls_certificate and tls_key go together"},
        {"local_domains: [a.example]\ndrain: {max_concurrency: 2, initial_concurrency: 3}\n",
         "test.yaml:2:50: drain.initial_concurrency: 3 is above max_concurrency 2"},
        {"local_domains: [a.example]\nlogging: {level: loud}\n",
         "test.yaml:2:18: logging.level: \"loud\" is not one of"},
        {"local_domains: [a.example]\nrules:\n  - {class: bulk, size_over: 1MiB, size_under: "
         "1KiB}\n",
         "test.yaml:3:5: rules[0]: no size is over"},
        {"local_domains: [a.example]\ndirectory: {default_domain: b.example}\n",
         "test.yaml:2:29: directory.default_domain: \"b.example\" is not among local_domains"},
        {"local_domains: [a.example]\nbounces: {delay_warning: 0}\n",
         "test.yaml:2:26: bounces.delay_warning: write \"off\""},
        {"local_domains: [a.example]\nhostname: [a, b]\n",
         "test.yaml:2:11: hostname: expected a string, got a list"},
        {"local_domains: [a.example]\nrules:\n  - {class: bulk, sender: [\"bad address\"]}\n",
         "test.yaml:3:27: rules[0].sender: \"bad address\" is not an address"},
        {"- 1\n- 2\n", "test.yaml:1:1: the top level must be a mapping"},
        {"local_domains: [a.example]\nmailstores:\n  - {name: one, kind: maildir}\n"
         "  - {name: two, kind: maildir}\n",
         "test.yaml:4:5: mailstores[1]: a second mailstore without domains would never be used; "
         "\"one\" already takes every domain not listed elsewhere"},
        {"local_domains: [a.example]\nmailstores:\n  - {kind: maildir, domains: [b.example]}\n",
         "test.yaml:3:31: mailstores[0].domains[0]: \"b.example\" is not among local_domains"},
        {"local_domains: [a.example, b.example]\nmailstores:\n"
         "  - {name: one, kind: maildir, domains: [a.example]}\n",
         "test.yaml:3:3: mailstores: local domain \"b.example\" goes to no mailstore"},
        {"local_domains: [a.example]\nmailstores:\n  - {name: one, kind: maildir, domains: "
         "[a.example]}\n"
         "  - {name: two, kind: maildir, domains: [A.example]}\n",
         "test.yaml:4:42: mailstores[1].domains[0]: \"a.example\" already goes to mailstore "
         "\"one\""},
        {"local_domains: [a.example]\nmailstores:\n  - {kind: maildir, domains: []}\n",
         "test.yaml:3:30: mailstores[0].domains: list at least one domain"},
        {"local_domains: [a.example]\nlisteners:\n  - {proxy_protocol: true}\n",
         "test.yaml:3:22: listeners[0]: proxy_protocol needs trusted_proxies"},
        {"local_domains: [a.example]\nlisteners:\n  - {trusted_proxies: [10.0.0.0/8]}\n",
         "test.yaml:3:23: listeners[0].trusted_proxies: applies only with proxy_protocol"},
        {"local_domains: [a.example]\nlisteners:\n  - {proxy_protocol: yes, trusted_proxies: "
         "[10.0.0.1/8]}\n",
         "test.yaml:3:45: listeners[0].trusted_proxies: host bits set"},
        {"local_domains: [a.example]\nauthserv_id: \"mx; spf=pass\"\n",
         "test.yaml:2:14: authserv_id: \"mx; spf=pass\" is not a token"},
        {"local_domains: [a.example]\nmilters:\n  - {address: inet:127.0.0.1:1}\n",
         "test.yaml:3:5: missing required key \"name\" in milters[0]"},
        {"local_domains: [a.example]\nmilters:\n  - {name: r, address: \"127.0.0.1:11332\"}\n",
         "test.yaml:3:24: milters[0].address: \"127.0.0.1:11332\" has no inet: or unix: prefix"},
        {"local_domains: [a.example]\nmilters:\n  - {name: r, address: \"inet:127.0.0.1\"}\n",
         "test.yaml:3:24: milters[0].address: \"inet:127.0.0.1\" has no host:port"},
        {"local_domains: [a.example]\nmilters:\n  - {name: r, address: \"inet:host:70000\"}\n",
         "test.yaml:3:24: milters[0].address: \"inet:host:70000\" has no port from 1 to 65535"},
        {"local_domains: [a.example]\nmilters:\n  - {name: r, address: \"inet:a b:25\"}\n",
         "test.yaml:3:24: milters[0].address: \"inet:a b:25\" has a host that is no address"},
        {"local_domains: [a.example]\nmilters:\n  - {name: r, address: \"unix:\"}\n",
         "test.yaml:3:24: milters[0].address: \"unix:\" names no socket"},
        {"local_domains: [a.example]\nmilters:\n  - {name: r, address: unix:/a}\n"
         "  - {name: r, address: unix:/b}\n",
         "test.yaml:4:12: milters[1].name: duplicate milter \"r\""},
        {"local_domains: [a.example]\nmilters:\n  - {name: r, address: unix:/a, on_failure: "
         "reject}\n",
         "test.yaml:3:45: milters[0].on_failure: \"reject\" is not one of tempfail, accept"},
        {"local_domains: [a.example]\nmilters:\n  - {name: r, address: unix:/a, "
         "content_timeout: 0s}\n",
         "test.yaml:3:50: milters[0].content_timeout: must be greater than zero"},
    };
    for (const auto& c : cases) {
        const std::string error = error_of(c.text);
        CAPTURE(c.text);
        CHECK_MESSAGE(starts_with(error, c.expected), error);
    }
}

TEST_CASE("milters, PROXY listeners, authserv_id and early data: values and defaults") {
    auto config = parse_config(kMinimal + R"(authserv_id: auth.example.com
listeners:
  - {address: 0.0.0.0, port: 25, proxy_protocol: true, trusted_proxies: [10.0.0.0/8, "::1"]}
  - {address: 127.0.0.1, port: 2525}
limits: {refuse_early_data: false}
bounces: {smarthost: relay.example.net} # not 127.0.0.1:25, our own listener on 0.0.0.0:25
milters:
  - name: rspamd
    address: inet:localhost:11332
    command_timeout: 5s
  - {name: dkim, address: "inet:[::1]:8891", on_failure: accept}
  - {name: local, address: unix:run/milter.sock, connect_timeout: 2s, content_timeout: 1m}
)",
                               "/etc/spoold/spoold.yaml");
    REQUIRE_MESSAGE(config, (config ? "" : config.error().message));
    const Config& c = **config;
    CHECK(c.authserv_id == "auth.example.com");
    CHECK(c.listeners[0].proxy_protocol);
    CHECK(c.listeners[0].trusted_proxies == std::vector<std::string>{"10.0.0.0/8", "::1"});
    CHECK_FALSE(c.listeners[1].proxy_protocol);
    CHECK_FALSE(c.limits.refuse_early_data);
    REQUIRE(c.milters.size() == 3);
    CHECK(c.milters[0].name == "rspamd");
    CHECK(c.milters[0].address == "inet:localhost:11332");
    CHECK(c.milters[0].host == "localhost");
    CHECK(c.milters[0].port == 11332);
    CHECK(c.milters[0].connect_timeout == 30s); // Postfix's defaults
    CHECK(c.milters[0].command_timeout == 5s);
    CHECK(c.milters[0].content_timeout == 300s);
    CHECK(c.milters[0].on_failure == MilterFailure::kTempFail);
    CHECK(c.milters[1].host == "::1");
    CHECK(c.milters[1].port == 8891);
    CHECK(c.milters[1].on_failure == MilterFailure::kAccept);
    CHECK(c.milters[2].unix_socket == "/etc/spoold/run/milter.sock");
    CHECK(c.milters[2].connect_timeout == 2s);
    CHECK(c.milters[2].content_timeout == 60s);

    auto defaults = parse_config(kMinimal, "test.yaml");
    REQUIRE(defaults);
    CHECK((*defaults)->authserv_id.empty()); // the hostname is used
    CHECK((*defaults)->milters.empty());
    CHECK((*defaults)->limits.refuse_early_data);
    CHECK_FALSE((*defaults)->listeners[0].proxy_protocol);
}

TEST_CASE("a missing file is a config error naming the file") {
    auto config = load_config("/nonexistent/spoold.yaml");
    REQUIRE_FALSE(config);
    CHECK(config.error().kind == ErrorKind::kConfig);
    CHECK(starts_with(config.error().message, "/nonexistent/spoold.yaml: cannot open"));
}

TEST_CASE("relative paths stay relative when the name has no directory") {
    auto config = parse_config(kMinimal + "spool: {path: spool}\n", "test.yaml");
    REQUIRE(config);
    CHECK((*config)->spool.path == "spool");
}

TEST_CASE("the sample configuration documents every key of the schema") {
    std::ifstream in(SPOOLD_SOURCE_DIR "/etc/spoold.yaml");
    REQUIRE(in);
    std::stringstream text;
    text << in.rdbuf();
    const std::string sample = "\n" + text.str();
    const auto keys = config_schema_keys();
    CHECK(keys.size() > 60);
    for (const auto& key : keys) {
        const auto dot = key.rfind('.');
        const std::string leaf = key.substr(dot == std::string::npos ? 0 : dot + 1);
        CAPTURE(key);
        if (dot == std::string::npos) {
            CHECK(sample.find("\n" + leaf + ":") != std::string::npos);
        } else {
            CHECK(sample.find(leaf + ":") != std::string::npos);
        }
    }
}

TEST_CASE("relative paths resolve against the config file's directory") {
    const auto dir =
        std::filesystem::temp_directory_path() / ("policy_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    const auto file = dir / "spoold.yaml";
    {
        std::ofstream out(file);
        out << kMinimal << "spool: {path: queue}\ndirectory: {file: ../users}\n"
            << "mailstores: [{kind: maildir, maildir_root: /abs/mail}]\n";
    }
    auto config = load_config(file.string());
    std::filesystem::remove_all(dir);
    REQUIRE_MESSAGE(config, (config ? "" : config.error().message));
    CHECK((*config)->spool.path == (dir / "queue").string());
    CHECK((*config)->directory.file == (dir.parent_path() / "users").string());
    CHECK((*config)->mailstores[0].maildir_root == "/abs/mail");
}

TEST_CASE("a smarthost that is one of our own listeners is refused, naming the listener") {
    // An MX on port 25 with the default smarthost (127.0.0.1:25) would send DSNs to itself.
    const std::string mx = kMinimal + "listeners: [{address: 0.0.0.0, port: 25}]\n";
    const std::string err = error_of(mx);
    CHECK(err.find("bounces.smarthost: 127.0.0.1:25 is our own listener listeners[0] "
                   "(0.0.0.0:25)") != std::string::npos);
    CHECK(error_of(kMinimal + "listeners: [{address: 127.0.0.1, port: 2525}]\n"
                              "bounces: {smarthost: 127.0.0.1, smarthost_port: 2525}\n")
              .find("our own listener listeners[0]") != std::string::npos);
    CHECK(error_of(kMinimal + "hostname: mx1.example.com\n"
                              "listeners: [{address: '::', port: 25}]\n"
                              "bounces: {smarthost: MX1.example.com}\n")
              .find("our own listener") != std::string::npos);
    // Another host, or another port of ours, is fine.
    CHECK(error_of(mx + "bounces: {smarthost: 192.0.2.25}\n") == "(no error)");
    CHECK(error_of(mx + "bounces: {smarthost: 127.0.0.1, smarthost_port: 587}\n") == "(no error)");
    CHECK(error_of(kMinimal) == "(no error)"); // the defaults: 127.0.0.1:2525 and :25
}

TEST_CASE("the smarthost has its own STARTTLS setting and timeouts") {
    auto config = parse_config(kMinimal + "bounces: {smarthost: 192.0.2.25, smarthost_starttls: "
                                          "false, smarthost_connect_timeout: 3s,\n"
                                          "  smarthost_command_timeout: 20s, "
                                          "smarthost_data_timeout: 2m}\n",
                               "test.yaml");
    REQUIRE(config);
    const BounceConfig& b = (*config)->bounces;
    CHECK_FALSE(b.smarthost_starttls);
    CHECK(b.smarthost_connect_timeout == 3s);
    CHECK(b.smarthost_command_timeout == 20s);
    CHECK(b.smarthost_data_timeout == 2min);
    CHECK(BounceConfig{}.smarthost_starttls);
}
