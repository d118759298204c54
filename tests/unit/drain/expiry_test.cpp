#include <doctest/doctest.h>

#include "drain/expiry.hpp"

using namespace spoold;
using namespace spoold::drain;

TEST_CASE("each class has its expiry action and a class no longer configured bounces") {
    policy::Config c;
    c.classes.resize(3);
    c.classes[0].on_expiry = policy::ExpiryAction::kHold;
    c.classes[1].on_expiry = policy::ExpiryAction::kDiscard;
    c.classes[2].on_expiry = policy::ExpiryAction::kBounce;
    struct Row {
        spool::ClassId klass;
        policy::ExpiryAction action;
    };
    for (const Row& row :
         {Row{0, policy::ExpiryAction::kHold}, Row{1, policy::ExpiryAction::kDiscard},
          Row{2, policy::ExpiryAction::kBounce}, Row{7, policy::ExpiryAction::kBounce}}) {
        CAPTURE(row.klass);
        CHECK(expiry_action(c, row.klass) == row.action);
    }
}

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
