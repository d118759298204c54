#include <doctest/doctest.h>

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <map>
#include <string>

#include "fleet/scripts.hpp"
#include "fleet/view.hpp"
#include "tests/unit/fleet/redis_server.hpp"

using namespace spoold;
using namespace spoold::fleet;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

// The sync script against a real Redis, one node's call at a time.
class Fleet {
public:
    Fleet() : client_(io_.get_executor(), redis_.endpoint(), 2s) {}

    SyncReply sync(const std::string& node, SyncRequest r, ShareLimits limits,
                   std::int64_t ttl_ms = 10'000) {
        SyncCall call;
        call.prefix = "t:";
        call.store = "store";
        call.node = node;
        call.lease_ttl_ms = ttl_ms;
        call.limits = limits;
        call.burst = static_cast<std::uint32_t>(std::max(1.0, limits.max_rate * 0.1));
        call.request = std::move(r);
        auto reply = test::run(io_, client_.eval(sync_script(), sync_keys(call), sync_args(call)));
        REQUIRE(reply);
        auto parsed = parse_sync_reply(*reply);
        REQUIRE_MESSAGE(parsed, (parsed ? "" : parsed.error().message));
        return *parsed;
    }

    std::uint32_t held(const std::string& node) {
        const StoreKeys k("t:", "store");
        return count(k.general, node) + count(k.reserve, node);
    }
    std::uint32_t held_total() {
        std::uint32_t sum = 0;
        for (const char* n : {"n1", "n2", "n3"}) {
            sum += held(n);
        }
        return sum;
    }
    Result<RedisReply> command(std::vector<std::string> args) {
        return test::run(io_, client_.command(std::move(args)));
    }
    RedisClient& client() { return client_; }
    asio::io_context& io() { return io_; }

private:
    std::uint32_t count(const std::string& hash, const std::string& node) {
        auto r = command({"HGET", hash, node});
        REQUIRE(r);
        return r->as_count();
    }

    test::RedisServer redis_;
    asio::io_context io_;
    RedisClient client_;
};

SyncRequest wants(std::uint32_t want, std::uint32_t used = 0, std::uint32_t urgent = 0) {
    SyncRequest r;
    r.want = want;
    r.used = used;
    r.used_general = used;
    r.want_urgent = urgent;
    return r;
}

const ShareLimits kSix{6, 0, 0};

} // namespace

TEST_CASE("the sync script never grants more than max_concurrency, and shares it fairly") {
    Fleet f;
    // Alone, n1 gets all it wants up to the limit.
    CHECK(f.sync("n1", wants(16), kSix).general == 6);
    // n2 and n3 find nothing free; their wants are recorded.
    CHECK(f.sync("n2", wants(16), kSix).general == 0);
    CHECK(f.sync("n3", wants(16), kSix).general == 0);
    CHECK(f.held_total() == 6);
    // n1, asked again while the others starve, is told to keep a fair share (6 / 3); its
    // six deliveries still count until they end.
    CHECK(f.sync("n1", wants(16, 6), kSix).general == 2);
    CHECK(f.held("n1") == 6);
    CHECK(f.sync("n2", wants(16), kSix).general == 0);
    // Its deliveries end: it gives back what it holds beyond its share, and the others
    // take it.
    CHECK(f.sync("n1", wants(16, 2), kSix).general == 2);
    CHECK(f.held("n1") == 2);
    CHECK(f.sync("n2", wants(16), kSix).general == 2);
    CHECK(f.sync("n3", wants(16), kSix).general == 2);
    CHECK(f.held_total() == 6);
    // A node that wants nothing holds nothing.
    CHECK(f.sync("n3", wants(0), kSix).general == 0);
    CHECK(f.held("n3") == 0);
    // Two left wanting: three each (of the four n1 does not hold, while n1 wants more).
    CHECK(f.sync("n2", wants(16, 2), kSix).general == 3);
    CHECK(f.held_total() == 5);
}

TEST_CASE("the urgent reserve is kept from the other classes and given to urgent demand") {
    Fleet f;
    const ShareLimits limits{6, 0, 2};
    // Bulk on n1 takes the general pool only: 6 - 2.
    CHECK(f.sync("n1", wants(16), limits).general == 4);
    CHECK(f.sync("n2", wants(16), limits).general == 0);
    // Urgent mail on n3 gets the reserve at once, although others starve.
    const SyncReply urgent = f.sync("n3", wants(16, 0, 16), limits);
    CHECK(urgent.reserve == 2);
    CHECK(urgent.general == 0);
    CHECK(f.held_total() == 6);
    // One urgent message wants one slot of the reserve, no more.
    CHECK(f.sync("n3", wants(1, 0, 1), limits).reserve == 1);
}

TEST_CASE("deliveries running when Redis came back are adopted: nothing new until they end") {
    Fleet f;
    // Three nodes ran 3 deliveries each on their fallback share; Redis is empty again.
    CHECK(f.sync("n1", wants(3, 3), kSix).general == 3);
    CHECK(f.sync("n2", wants(3, 3), kSix).general == 3);
    const SyncReply third = f.sync("n3", wants(3, 3), kSix);
    CHECK(third.general == 0);
    CHECK(f.held("n3") == 3); // recorded: its deliveries are running
    CHECK(f.held_total() == 9);
    CHECK(f.sync("n1", wants(16, 3), kSix).general == 0);
    // n3's end; only then is there room.
    CHECK(f.sync("n3", wants(0, 0), kSix).general == 0);
    CHECK(f.held_total() == 6);
    CHECK(f.sync("n1", wants(16, 3), kSix).general == 3);
}

TEST_CASE("a node that stops renewing loses its slots when its lease runs out") {
    Fleet f;
    CHECK(f.sync("n1", wants(6), kSix, 300).general == 6);
    CHECK(f.sync("n2", wants(6), kSix, 300).general == 0);
    const auto t0 = std::chrono::steady_clock::now();
    std::uint32_t got = 0;
    while (got == 0) {
        REQUIRE(std::chrono::steady_clock::now() - t0 < 5s);
        asio::steady_timer pause(f.io(), 20ms);
        pause.wait();
        got = f.sync("n2", wants(6), kSix, 300).general;
    }
    CHECK(got == 6);
    CHECK(std::chrono::steady_clock::now() - t0 >= 200ms);
    CHECK(f.held("n1") == 0);
}

TEST_CASE("the rate is a GCRA on Redis's clock: a burst, then tokens at the rate") {
    Fleet f;
    SyncRequest r;
    r.tokens = 50;
    r.min_tokens = 1;
    const ShareLimits slow{0, 1, 0}; // one per second, a burst of one
    CHECK(f.sync("n1", r, slow).tokens == 1);
    const SyncReply empty = f.sync("n2", r, slow);
    CHECK(empty.tokens == 0);
    CHECK(empty.retry_ms >= 1);
    CHECK(empty.retry_ms <= 1000);
    // Three nodes ask as fast as they can for a while: the tokens stay within the rate.
    const ShareLimits limits{0, 100, 0}; // 100/s, burst 10
    REQUIRE(f.command({"DEL", StoreKeys("t:", "store").tat}));
    const auto t0 = std::chrono::steady_clock::now();
    std::uint64_t granted = f.sync("n1", r, limits).tokens;
    CHECK(granted == 10);
    while (std::chrono::steady_clock::now() - t0 < 600ms) {
        for (const char* n : {"n1", "n2", "n3"}) {
            granted += f.sync(n, r, limits).tokens;
        }
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(static_cast<double>(granted) <= 100 * seconds + 10 + 1);
    CHECK(static_cast<double>(granted) >= 100 * seconds * 0.8);
}

TEST_CASE("one node holds the probe while the store is down, and its result reaches all") {
    Fleet f;
    SyncRequest down;
    down.probing = true;
    CHECK(f.sync("n1", down, kSix).prober == "n1");
    CHECK(f.sync("n2", down, kSix).prober == "n1");
    const std::int64_t before = f.sync("n2", down, kSix).epoch;
    SyncRequest up = down;
    up.probe_result = "up";
    const SyncReply published = f.sync("n1", up, kSix);
    CHECK(published.epoch == before + 1);
    CHECK(published.state == "up");
    const SyncReply heard = f.sync("n2", down, kSix);
    CHECK(heard.epoch == before + 1);
    CHECK(heard.state == "up");
    // n1's breaker closes: it lets the probe go, and n2 takes it.
    CHECK(f.sync("n1", SyncRequest{}, kSix).prober.empty());
    CHECK(f.sync("n2", down, kSix).prober == "n2");
}

TEST_CASE("a prober that stops renewing hands the probe over when its short lease runs out") {
    Fleet f;
    SyncRequest down;
    down.probing = true;
    constexpr std::int64_t kTtlMs = 400;
    const auto probe_lease = std::chrono::milliseconds(probe_lease_ms(kTtlMs));
    // A quarter of the TTL, but at least 1 s or the whole TTL, whichever is shorter.
    REQUIRE(probe_lease.count() == kTtlMs);
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(f.sync("n1", down, kSix, kTtlMs).prober == "n1");
    std::string prober = f.sync("n2", down, kSix, kTtlMs).prober;
    CHECK(prober == "n1");
    while (prober == "n1") {
        REQUIRE(std::chrono::steady_clock::now() - t0 < 5s);
        asio::steady_timer pause(f.io(), 20ms);
        pause.wait();
        prober = f.sync("n2", down, kSix, kTtlMs).prober;
    }
    CHECK(prober == "n2");
    // n1's lease began after t0 and ran its full length.
    CHECK(std::chrono::steady_clock::now() - t0 >= probe_lease);
    CHECK(f.sync("n1", down, kSix, kTtlMs).prober == "n2");
}

TEST_CASE("heartbeats count the live nodes, the view reads them back, and leave removes one") {
    Fleet f;
    NodeStatus status;
    status.classes = {{"urgent", 1, 2, 3}, {"bulk", 10, 0, 0}};
    status.oldest_age_s = 42.5;
    status.drain_rate = 7.25;
    status.mailstores = {{"store", "closed", 2, "fleet", 3}};
    for (const char* node : {"n1", "n2"}) {
        std::vector<std::string> args{node, "10000"};
        auto fields = encode_status(status);
        args.insert(args.end(), fields.begin(), fields.end());
        auto r = test::run(f.io(), f.client().eval(heartbeat_script(),
                                                   {nodes_key("t:"), node_key("t:", node)}, args));
        REQUIRE(r);
        REQUIRE_FALSE(r->is_error());
    }
    CHECK(f.sync("n1", wants(4), kSix).live_nodes == 2);
    auto view = test::run(f.io(), read_view(f.client(), "t:", {"store"}));
    REQUIRE(view);
    REQUIRE(view->nodes.size() == 2);
    CHECK(view->nodes[0].node == "n1");
    const NodeStatus& back = view->nodes[1].status;
    REQUIRE(back.classes.size() == 2);
    CHECK(back.classes[0].name == "urgent");
    CHECK(back.classes[0].held == 3);
    CHECK(back.oldest_age_s == doctest::Approx(42.5));
    CHECK(back.drain_rate == doctest::Approx(7.25));
    REQUIRE(back.mailstores.size() == 1);
    CHECK(back.mailstores[0].slots == 3);
    REQUIRE(view->stores.size() == 1);
    REQUIRE(view->stores[0].holders.size() == 1);
    CHECK(view->stores[0].holders[0].general == 4);
    const std::string json = view_json(*view);
    CHECK(json.find(R"("totals":{"nodes":2,"ready":22,"deferred":4,"held":6,)") !=
          std::string::npos);
    CHECK(json.find(R"("urgent":{"ready":2,"deferred":4,"held":6})") != std::string::npos);

    const StoreKeys k("t:", "store");
    auto left = test::run(f.io(), f.client().eval(leave_script(),
                                                  {nodes_key("t:"), node_key("t:", "n1"), k.general,
                                                   k.reserve, k.want, k.leases, k.probe},
                                                  {"n1"}));
    REQUIRE(left);
    REQUIRE_FALSE(left->is_error());
    CHECK(f.held("n1") == 0);
    auto after = test::run(f.io(), read_view(f.client(), "t:", {"store"}));
    REQUIRE(after);
    REQUIRE(after->nodes.size() == 1);
    CHECK(after->nodes[0].node == "n2");
}
