#include <doctest/doctest.h>

#include <string>

#include "policy/config.hpp"
#include "policy/xfer_peers.hpp"
#include "tests/support/config_text.hpp"

using namespace spoold;
using namespace spoold::policy;
using spoold::testing::error_of;
using namespace std::chrono_literals;

namespace {

const std::string kMinimal = "hostname: mx7.example.com\nlocal_domains: [example.com]\n";

Config parsed(const std::string& text) {
    return *spoold::testing::parsed_config(text, "/etc/spoold/spoold.yaml");
}

} // namespace

TEST_CASE("without a fleet section a node drains alone, named after its host") {
    const Config c = parsed(kMinimal);
    CHECK_FALSE(c.fleet.coordinated());
    CHECK(c.fleet.node == "mx7.example.com");
    CHECK(c.fleet.urgent_class == "urgent");
    CHECK_FALSE(c.mailstores[0].fleet.limited());
}

TEST_CASE("fleet.redis takes host:port, a bracketed IPv6 address, a bare host or a socket") {
    const Config tcp = parsed(kMinimal + "fleet: {redis: \"127.0.0.1:6400\", node: mx1}\n");
    CHECK(tcp.fleet.coordinated());
    CHECK(tcp.fleet.redis_host == "127.0.0.1");
    CHECK(tcp.fleet.redis_port == 6400);
    CHECK(tcp.fleet.redis_socket.empty());
    CHECK(tcp.fleet.redis_address() == "127.0.0.1:6400");
    CHECK(tcp.fleet.node == "mx1");
    CHECK(tcp.fleet.key_prefix == "spoold:");
    CHECK(tcp.fleet.timeout == 500ms);
    CHECK(tcp.fleet.lease_ttl == 10s);

    const Config v6 = parsed(kMinimal + "fleet: {redis: \"[::1]:7000\"}\n");
    CHECK(v6.fleet.redis_host == "::1");
    CHECK(v6.fleet.redis_port == 7000);
    CHECK(v6.fleet.redis_address() == "[::1]:7000");

    const Config bare = parsed(kMinimal + "fleet: {redis: redis.internal}\n");
    CHECK(bare.fleet.redis_host == "redis.internal");
    CHECK(bare.fleet.redis_port == 6379);

    const Config unix_prefix = parsed(kMinimal + "fleet: {redis: \"unix:run/redis.sock\"}\n");
    CHECK(unix_prefix.fleet.redis_socket == "/etc/spoold/run/redis.sock");
    const Config path = parsed(kMinimal + "fleet: {redis: /run/redis/redis.sock}\n");
    CHECK(path.fleet.redis_socket == "/run/redis/redis.sock");
    CHECK(path.fleet.redis_address() == "/run/redis/redis.sock");
}

TEST_CASE("per-mailstore fleet limits are read and need fleet.redis") {
    const std::string stores = "mailstores:\n"
                               "  - name: dovecot\n"
                               "    kind: lmtp\n"
                               "    fleet: {max_concurrency: 200, max_rate: 2000.5, "
                               "urgent_reserve: 20}\n";
    const Config c = parsed(kMinimal + stores + "fleet: {redis: \"127.0.0.1:6379\"}\n");
    const MailstoreFleetConfig& f = c.mailstores[0].fleet;
    CHECK(f.limited());
    CHECK(f.max_concurrency == 200);
    CHECK(f.max_rate == doctest::Approx(2000.5));
    CHECK(f.urgent_reserve == 20);
    CHECK(error_of(kMinimal + stores) ==
          "test.yaml:4:3: mailstores[0].fleet: fleet limits need fleet.redis");
}

TEST_CASE("impossible fleet settings are refused where they are written") {
    const std::string lmtp = "mailstores:\n  - kind: lmtp\n    fleet: ";
    CHECK(error_of(kMinimal + lmtp + "{max_concurrency: 4, urgent_reserve: 4}\n") ==
          "test.yaml:5:49: mailstores[0].fleet.urgent_reserve: 4 leaves no slot for the other "
          "classes (max_concurrency 4)");
    CHECK(error_of(kMinimal + lmtp + "{max_rate: -1}\n") ==
          "test.yaml:5:23: mailstores[0].fleet.max_rate: must not be negative (0 = no fleet "
          "rate limit)");
    CHECK(error_of(kMinimal + lmtp + "{max_concurency: 4}\n") ==
          "test.yaml:5:13: unknown key \"max_concurency\" in mailstores[0].fleet (did you mean "
          "\"max_concurrency\"?)");
    CHECK(error_of(kMinimal + "fleet: {redis: \"127.0.0.1:0\"}\n") ==
          "test.yaml:3:16: fleet.redis: \"0\" is not a port");
    CHECK(error_of(kMinimal + "fleet: {redis: \"not a host:1\"}\n") ==
          "test.yaml:3:16: fleet.redis: \"not a host:1\" is not host:port or a socket path");
    CHECK(error_of(kMinimal + "fleet: {redis: r:1, node: \"mx 1\"}\n") ==
          "test.yaml:3:27: fleet.node: \"mx 1\" must be 1 to 64 letters, digits, '-', '_' or '.'");
    CHECK(error_of(kMinimal + "fleet: {redis: r:1, timeout: 1s, lease_ttl: 3s}\n") ==
          "test.yaml:3:45: fleet.lease_ttl: must be at least four times fleet.timeout (4000 ms): "
          "a lease is renewed several times before it expires");
    CHECK(error_of(kMinimal + "fleet: {redis: r:1, urgent_class: vip}\n") ==
          "test.yaml:3:35: fleet.urgent_class: unknown class \"vip\"");
}

TEST_CASE("without xfer.peers no client is trusted to claim a class or arrival") {
    const XferPeers peers(parsed(kMinimal));
    CHECK_FALSE(peers.trusts("127.0.0.1"));
    CHECK_FALSE(peers.trusts("::1"));
}

TEST_CASE("xfer.peers trusts exactly the addresses inside its networks") {
    const XferPeers peers(parsed(kMinimal + "xfer: {peers: [10.1.0.0/16, \"2001:db8::7\"]}\n"));
    CHECK(peers.trusts("10.1.2.3"));
    CHECK(peers.trusts("::ffff:10.1.200.1"));
    CHECK(peers.trusts("2001:db8::7"));
    CHECK_FALSE(peers.trusts("10.2.0.1"));
    CHECK_FALSE(peers.trusts("2001:db8::8"));
    CHECK_FALSE(peers.trusts("not an address"));
    CHECK_FALSE(peers.trusts(""));
}

TEST_CASE("an xfer.peers entry that is not a network is refused at load") {
    CHECK(error_of(kMinimal + "xfer: {peers: [10.1.0.1/16]}\n").find("xfer.peers[0]") !=
          std::string::npos);
    CHECK(error_of(kMinimal + "xfer: {peers: [mx2.example.com]}\n").find("xfer.peers[0]") !=
          std::string::npos);
    CHECK(error_of(kMinimal + "xfer: {trusted: [10.0.0.0/8]}\n").find("trusted") !=
          std::string::npos);
}
