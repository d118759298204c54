#include <doctest/doctest.h>

#include <limits>

#include "policy/retention.hpp"

using namespace spoold;
using namespace spoold::policy;
using namespace std::chrono_literals;

TEST_CASE("a message expires at arrival plus its class's retention") {
    Config c;
    c.classes[0].retention = 2h;
    c.classes[2].retention = 7 * 24h;
    const UnixMillis arrival = 1'700'000'000'000;
    CHECK(expiry_ms(c, 0, arrival) == arrival + 2 * 3'600'000);
    CHECK(expiry_ms(c, 1, arrival) == arrival + 30LL * 86'400'000);
    CHECK(expiry_ms(c, 2, arrival) == arrival + 7LL * 86'400'000);
    // A class removed by a reload: the default class's retention.
    CHECK(expiry_ms(c, 9, arrival) == expiry_ms(c, 1, arrival));
    c.classes[0].retention = Seconds(std::numeric_limits<std::int64_t>::max() / 2000);
    CHECK(expiry_ms(c, 0, std::numeric_limits<UnixMillis>::max() - 5) ==
          std::numeric_limits<UnixMillis>::max());
}

TEST_CASE("a retention of 0 never expires, also for a removed class through the default") {
    Config c;
    c.classes[1].retention = Seconds(0);
    const UnixMillis arrival = 1'700'000'000'000;
    CHECK(expiry_ms(c, 1, arrival) == kNeverExpires);
    CHECK(expiry_ms(c, 9, arrival) == kNeverExpires); // default_class is "normal", class 1
    CHECK(expiry_ms(c, 0, arrival) == arrival + 30LL * 86'400'000);
    CHECK_FALSE(is_expired(expiry_ms(c, 1, arrival), std::numeric_limits<UnixMillis>::max()));
}

TEST_CASE("expiry actions come from the class and a class the config does not know is held") {
    Config c;
    c.classes[1].on_expiry = ExpiryAction::kHold;
    c.classes[2].on_expiry = ExpiryAction::kDiscard;
    CHECK(expiry_action(c, 0) == ExpiryAction::kBounce);
    CHECK(expiry_action(c, 1) == ExpiryAction::kHold);
    CHECK(expiry_action(c, 2) == ExpiryAction::kDiscard);
    CHECK(expiry_action(c, 7) == ExpiryAction::kHold);
}

TEST_CASE("expiry and delay warnings are due from their moment on") {
    CHECK_FALSE(is_expired(0, 1'000));
    CHECK_FALSE(is_expired(1'000, 999));
    CHECK(is_expired(1'000, 1'000));
    BounceConfig b;
    CHECK_FALSE(delay_warning_due(b, 0, 1'000'000'000));
    b.delay_warning = 4h;
    CHECK_FALSE(delay_warning_due(b, 1'000, 1'000 + 4 * 3'600'000 - 1));
    CHECK(delay_warning_due(b, 1'000, 1'000 + 4 * 3'600'000));
}
