#include <doctest/doctest.h>

#include "drain/recipient_groups.hpp"

using namespace spoold;
using namespace spoold::drain;

namespace {

spool::Envelope envelope(std::vector<std::pair<std::string, spool::RcptState>> recipients,
                         std::uint32_t flags = 0) {
    spool::Envelope env;
    env.flags = flags;
    for (auto& [address, state] : recipients) {
        spool::Recipient r;
        r.address = address;
        r.state = state;
        env.recipients.push_back(r);
    }
    return env;
}

} // namespace

TEST_CASE("queued recipients are grouped by store, only for the stores a slot was taken in") {
    policy::Config c;
    c.mailstores.resize(2);
    c.mailstores[0].name = "default";
    c.mailstores[1].name = "net";
    c.mailstores[1].domains = {"example.net"};
    Routes routes;
    routes.rebuild(c, {"default", "net"});
    routes.set_dsn_relay(2);

    using S = spool::RcptState;
    const auto mixed = envelope({{"a@example.com", S::kQueued},
                                 {"b@example.net", S::kQueued},
                                 {"c@example.com", S::kDelivered},
                                 {"d@example.com", S::kQueued},
                                 {"e@example.net", S::kDeferred},
                                 {"f@EXAMPLE.net", S::kQueued}});
    const auto dsn = envelope({{"g@example.net", S::kQueued}}, spool::kFlagDsn);
    struct Row {
        const char* what;
        const spool::Envelope& env;
        std::vector<std::size_t> taken;
        std::vector<Group> groups;
    };
    const Row rows[] = {
        {"both stores, in order of their first recipient",
         mixed,
         {1, 0},
         {Group{0, {0, 3}}, Group{1, {1, 5}}}},
        {"one store had room: the others stay queued", mixed, {1}, {Group{1, {1, 5}}}},
        {"no slot: nothing goes", mixed, {}, {}},
        {"a store none of its recipients goes to", mixed, {2}, {}},
        {"our DSN goes to the relay", dsn, {2}, {Group{2, {0}}}},
        {"not to its recipient's domain", dsn, {1}, {}},
    };
    for (const Row& row : rows) {
        CAPTURE(row.what);
        CHECK(group_by_store(row.env, routes, row.taken) == row.groups);
    }
}
