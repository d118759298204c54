#include <doctest/doctest.h>

#include "spool/tables.hpp"
#include "spool_test_support.hpp"

namespace spoold::spool {

TEST_CASE("a new spool gets format 3; a newer format is refused as corrupt") {
    test::TempDir dir;
    auto raw = test::open_raw(dir.sub("env"));
    auto format = check_format(*raw.env, raw.tables);
    REQUIRE(format.has_value());
    CHECK(*format == 3);
    {
        auto txn = raw.env->begin_read();
        REQUIRE(txn.has_value());
        auto v = txn->get(raw.tables.meta, "format_version");
        REQUIRE(v.has_value());
        CHECK(*v == std::optional<std::string_view>{"3"});
    }
    REQUIRE(check_format(*raw.env, raw.tables)); // opening again is fine
    test::write_txn(*raw.env, [&](lmdb::WriteTxn& txn) {
        REQUIRE(txn.put(raw.tables.meta, "format_version", "4"));
    });
    auto newer = check_format(*raw.env, raw.tables);
    REQUIRE_FALSE(newer.has_value());
    CHECK(newer.error().kind == ErrorKind::kCorrupt);
}

TEST_CASE("used pages grow with the data and count every table") {
    test::TempDir dir;
    auto raw = test::open_raw(dir.sub("env"));
    std::uint64_t before = 0;
    {
        auto txn = raw.env->begin_read();
        REQUIRE(txn.has_value());
        auto used = used_pages(*txn, raw.tables);
        REQUIRE(used.has_value());
        before = *used;
    }
    test::write_txn(*raw.env, [&](lmdb::WriteTxn& txn) {
        for (int i = 0; i < 100; ++i) {
            REQUIRE(txn.put(raw.tables.corrupt, "key" + std::to_string(i), std::string(4000, 'x')));
        }
    });
    auto txn = raw.env->begin_read();
    REQUIRE(txn.has_value());
    const auto after = used_pages(*txn, raw.tables);
    REQUIRE(after.has_value());
    CHECK(*after >= before + 100); // each value fills an overflow page
}

} // namespace spoold::spool
