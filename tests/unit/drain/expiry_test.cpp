#include <doctest/doctest.h>

#include "drain/expiry.hpp"

using namespace spoold;
using namespace spoold::drain;

TEST_CASE("expiry ends every recipient not final yet, without counting an attempt") {
    using S = spool::RcptState;
    spool::Envelope env;
    for (const S s :
         {S::kQueued, S::kDelivered, S::kDeferred, S::kFailed, S::kExpired, S::kQueued}) {
        spool::Recipient r;
        r.state = s;
        env.recipients.push_back(r);
    }
    const auto updates = expire_recipients(env);
    std::vector<std::uint32_t> indexes;
    for (const auto& u : updates) {
        indexes.push_back(u.index);
        CHECK(u.state == S::kExpired);
        CHECK_FALSE(u.count_attempt);
        CHECK(u.response.starts_with("expired:"));
    }
    CHECK(indexes == std::vector<std::uint32_t>{0, 2, 5});
}
