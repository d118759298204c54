#include <doctest/doctest.h>

#include <string>

#include "spool/bodies.hpp"
#include "spool/record.hpp"
#include "spool_test_support.hpp"

namespace spoold::spool {

TEST_CASE("a body is stored in chunks of the chunk size and read back in whole chunks") {
    test::TempDir dir;
    auto raw = test::open_raw(dir.sub("env"));
    const Bodies bodies(raw.tables, 10);
    std::string body;
    for (int i = 0; i < 35; ++i) {
        body += static_cast<char>('a' + i % 26);
    }
    std::uint64_t ref = 0;
    test::write_txn(*raw.env, [&](lmdb::WriteTxn& txn) {
        auto fresh = bodies.new_ref(txn);
        REQUIRE(fresh.has_value());
        ref = *fresh;
        auto next = bodies.put(txn, ref, 0, body.substr(0, 20));
        REQUIRE(next.has_value());
        CHECK(*next == 2);
        next = bodies.put(txn, ref, *next, body.substr(20));
        REQUIRE(next.has_value());
        CHECK(*next == 4); // 15 bytes: one full chunk and a 5-byte tail
    });
    auto txn = raw.env->begin_read();
    REQUIRE(txn.has_value());
    CHECK(*bodies.stored_bytes(*txn, ref) == 35);
    auto first = bodies.read(*txn, ref, 0, 15);
    REQUIRE(first.has_value());
    CHECK(first->data == body.substr(0, 10)); // a second chunk would pass max_bytes
    CHECK(first->next_chunk == 1);
    CHECK_FALSE(first->done);
    auto tiny = bodies.read(*txn, ref, 1, 1);
    REQUIRE(tiny.has_value());
    CHECK(tiny->data == body.substr(10, 10)); // at least one chunk, whatever max_bytes says
    auto rest = bodies.read(*txn, ref, 2, 1000);
    REQUIRE(rest.has_value());
    CHECK(rest->data == body.substr(20));
    CHECK(rest->next_chunk == 4);
    CHECK(rest->done);
}

TEST_CASE("body refs count up from the meta counter, and erase removes only its own body") {
    test::TempDir dir;
    auto raw = test::open_raw(dir.sub("env"));
    const Bodies bodies(raw.tables, 4);
    std::uint64_t a = 0;
    std::uint64_t b = 0;
    test::write_txn(*raw.env, [&](lmdb::WriteTxn& txn) {
        a = *bodies.new_ref(txn);
        b = *bodies.new_ref(txn);
        REQUIRE(bodies.put(txn, a, 0, "first body"));
        REQUIRE(bodies.put(txn, b, 0, "second"));
    });
    CHECK(b == a + 1);
    test::write_txn(*raw.env, [&](lmdb::WriteTxn& txn) {
        REQUIRE(bodies.erase(txn, a));
        // Without the counter the next ref continues after the newest chunk.
        REQUIRE(txn.del(raw.tables.meta, "last_body_ref"));
        CHECK(*bodies.new_ref(txn) == b + 1);
    });
    auto txn = raw.env->begin_read();
    REQUIRE(txn.has_value());
    CHECK(*bodies.stored_bytes(*txn, a) == 0);
    CHECK(bodies.read(*txn, b, 0, 100)->data == "second");
}

} // namespace spoold::spool
