#include <doctest/doctest.h>

#include "drain/routes.hpp"
#include "spool/spool.hpp"

using namespace spoold;
using namespace spoold::drain;

namespace {

policy::MailstoreConfig mailstore(std::string name, std::vector<std::string> domains = {}) {
    policy::MailstoreConfig m;
    m.name = std::move(name);
    m.domains = std::move(domains);
    return m;
}

struct Row {
    const char* address;
    std::uint32_t flags;
    std::size_t store;
};

void check_rows(const Routes& routes, std::initializer_list<Row> rows) {
    for (const Row& row : rows) {
        CAPTURE(row.address);
        CAPTURE(row.flags);
        CHECK(routes.route(row.address, row.flags) == row.store);
    }
}

} // namespace

TEST_CASE("a recipient goes to the mailstore listing its domain, else to the default one") {
    policy::Config c;
    c.mailstores = {mailstore("dovecot", {"example.com"}), mailstore("default"),
                    mailstore("archive", {"example.net", "example.org"})};
    Routes routes;
    routes.rebuild(c, {"dovecot", "default", "archive"});
    check_rows(routes, {
                           {"a@example.com", 0, 0},
                           {"a@EXAMPLE.Com", 0, 0}, // domains compare case-insensitively
                           {"b@example.net", 0, 2},
                           {"c@example.org", 0, 2},
                           {"d@elsewhere.example", 0, 1},
                           {"x@sub.example.com", 0, 1},           // the exact domain only
                           {"odd@at@example.net", 0, 2},          // the last @ starts the domain
                           {"no-at-sign", 0, 1},                  // no domain: the default
                           {"a@example.com", spool::kFlagDsn, 0}, // no relay yet: by domain
                       });
}

TEST_CASE("once a relay is set our DSNs go to it, whatever their recipient's domain") {
    policy::Config c;
    c.mailstores = {mailstore("dovecot", {"example.com"}), mailstore("default")};
    Routes routes;
    routes.rebuild(c, {"dovecot", "default"});
    routes.set_dsn_relay(2);
    REQUIRE(routes.dsn_relay() == std::optional<std::size_t>{2});
    check_rows(routes, {
                           {"a@example.com", spool::kFlagDsn, 2},
                           {"b@remote.example", spool::kFlagDsn | spool::kFlag8BitMime, 2},
                           {"a@example.com", 0, 0},
                           {"b@remote.example", spool::kFlag8BitMime, 1},
                       });
}

TEST_CASE("a configured mailstore that is not running gets no route, and the first without "
          "domains is the default") {
    policy::Config c;
    c.mailstores = {mailstore("a", {"a.example"}), mailstore("b"), mailstore("c"),
                    mailstore("new", {"new.example"})};
    Routes routes;
    routes.rebuild(c, {"a", "b", "c"}); // "new" came with a reload: it needs a restart
    check_rows(routes, {
                           {"u@a.example", 0, 0},
                           {"u@new.example", 0, 1},
                           {"u@other.example", 0, 1},
                       });
}

TEST_CASE("a reload moves domains between the running mailstores") {
    policy::Config c;
    c.mailstores = {mailstore("a", {"x.example"}), mailstore("b")};
    Routes routes;
    routes.rebuild(c, {"a", "b"});
    check_rows(routes, {{"u@x.example", 0, 0}, {"u@y.example", 0, 1}});
    c.mailstores = {mailstore("a"), mailstore("b", {"x.example"})};
    routes.rebuild(c, {"a", "b"});
    check_rows(routes, {{"u@x.example", 0, 1}, {"u@y.example", 0, 0}});
}
