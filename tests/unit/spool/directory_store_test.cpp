#include <doctest/doctest.h>

#include "spool/directory_store.hpp"
#include "spool_test_support.hpp"

namespace spoold::spool {

TEST_CASE("the directory store replaces all entries atomically and looks up case-insensitively") {
    test::TempDir dir;
    DirectoryStoreOptions o;
    o.path = dir.sub("directory");
    auto store = DirectoryStore::open(o);
    REQUIRE(store.has_value());
    REQUIRE((*store)->replace(
        {{"Alice@Example.ORG", "mailbox"}, {"sales@example.org", "alias:bob@example.org"}}));
    CHECK(*(*store)->size() == 2);
    CHECK(*(*store)->lookup("alice@example.org") == std::optional<std::string>{"mailbox"});
    CHECK(*(*store)->lookup("ALICE@EXAMPLE.ORG") == std::optional<std::string>{"mailbox"});
    CHECK_FALSE((*store)->lookup("nobody@example.org")->has_value());

    REQUIRE((*store)->replace({{"carol@example.org", "mailbox"}}));
    CHECK(*(*store)->size() == 1);
    CHECK_FALSE((*store)->lookup("alice@example.org")->has_value());

    store->reset();
    DirectoryStoreOptions ro = o;
    ro.read_only = true;
    auto reader = DirectoryStore::open(ro);
    REQUIRE(reader.has_value());
    CHECK(*(*reader)->lookup("Carol@example.org") == std::optional<std::string>{"mailbox"});
}

TEST_CASE("a rebuild fills a table beside the live one, which answers until the swap") {
    test::TempDir dir;
    DirectoryStoreOptions o;
    o.path = dir.sub("directory");
    auto opened = DirectoryStore::open(o);
    REQUIRE(opened.has_value());
    DirectoryStore& store = **opened;
    REQUIRE(store.rebuild(
        [n = 0](std::string& key, std::string& target) mutable -> Result<bool> {
            key = n == 0 ? "old@example.org" : "sales@example.org";
            target = n == 0 ? "" : "old@example.org";
            return n++ < 2;
        },
        "file v1"));
    CHECK(*store.source() == "file v1");
    CHECK(*store.aliases_of("OLD@example.org", 10) ==
          std::vector<std::string>{"sales@example.org"});

    // More entries than one transaction holds; the live table answers all along.
    const std::size_t total = kDirectoryBuildBatch + 10;
    std::size_t n = 0;
    bool old_seen_midway = false;
    bool new_hidden_midway = false;
    REQUIRE(store.rebuild(
        [&](std::string& key, std::string& target) -> Result<bool> {
            if (n == kDirectoryBuildBatch + 5) {
                old_seen_midway = store.lookup("old@example.org")->has_value();
                new_hidden_midway = !store.lookup("user1@example.org")->has_value();
            }
            if (n == total) {
                return false;
            }
            key = "User" + std::to_string(n % (total - 1)) + "@Example.org"; // the last repeats
            target = n == 3 ? "user0@example.org" : (n == total - 1 ? "dup@example.org" : "");
            ++n;
            return true;
        },
        "file v2"));
    CHECK(old_seen_midway);
    CHECK(new_hidden_midway);
    CHECK(*store.size() == total - 1);
    CHECK(store.lookup("user1@example.org")->has_value());
    CHECK(*store.lookup("user0@example.org") == std::optional<std::string>{""}); // first wins
    CHECK(*store.lookup("user3@example.org") == std::optional<std::string>{"user0@example.org"});
    CHECK(*store.aliases_of("user0@example.org", 10) ==
          std::vector<std::string>{"user3@example.org"});
    CHECK_FALSE(store.lookup("old@example.org")->has_value());
    CHECK(store.aliases_of("old@example.org", 10)->empty());
    CHECK(*store.source() == "file v2");

    // A rebuild that fails part way leaves the live table as it was.
    std::size_t m = 0;
    auto failed = store.rebuild(
        [&](std::string& key, std::string& target) -> Result<bool> {
            if (m == 5) {
                return fail(ErrorKind::kConfig, "recipients:6: bad line");
            }
            key = "new" + std::to_string(m++) + "@example.org";
            target.clear();
            return true;
        },
        "file v3");
    REQUIRE_FALSE(failed.has_value());
    CHECK(failed.error().kind == ErrorKind::kConfig);
    CHECK(store.lookup("user1@example.org")->has_value());
    CHECK_FALSE(store.lookup("new0@example.org")->has_value());
    CHECK(*store.source() == "file v2");
}

} // namespace spoold::spool
