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

} // namespace spoold::spool
