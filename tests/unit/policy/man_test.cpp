#include <doctest/doctest.h>

#include <set>
#include <string>
#include <utility>

#include "policy/config.hpp"
#include "tests/support/mdoc_items.hpp"

using namespace spoold::policy;
using spoold::testing::first_word_after;
using spoold::testing::mdoc_items;

namespace {

// The page's heading for a schema section: "TOP LEVEL" for the top, else the path without
// the list markers ("rules[].headers[]" -> "rules.headers").
std::string heading_of(std::string section) {
    if (section.empty()) {
        return "TOP LEVEL";
    }
    for (auto at = section.find("[]"); at != std::string::npos; at = section.find("[]")) {
        section.erase(at, 2);
    }
    return section;
}

} // namespace

TEST_CASE("spoold.yaml(5) has an item for every key of the schema under its section, and no "
          "other") {
    const auto items = mdoc_items(SPOOLD_SOURCE_DIR "/man/spoold.yaml.5");
    REQUIRE(!items.empty());
    std::set<std::pair<std::string, std::string>> schema; // {heading, key}
    std::set<std::string> headings;
    for (const std::string& key : config_schema_keys()) {
        const auto dot = key.rfind('.');
        const std::string section = dot == std::string::npos ? "" : key.substr(0, dot);
        schema.emplace(heading_of(section), key.substr(dot == std::string::npos ? 0 : dot + 1));
        headings.insert(heading_of(section));
    }
    CHECK(schema.size() > 60);
    std::set<std::pair<std::string, std::string>> documented;
    for (const auto& item : items) {
        if (headings.count(item.heading) == 1) {
            const std::string key = first_word_after(item.line, "Ic ");
            CAPTURE(item.line);
            CHECK(!key.empty());
            CHECK(documented.emplace(item.heading, key).second);
        }
    }
    for (const auto& [heading, key] : schema) {
        CAPTURE(heading);
        CAPTURE(key);
        CHECK(documented.count({heading, key}) == 1);
    }
    for (const auto& [heading, key] : documented) {
        CAPTURE(heading);
        CAPTURE(key);
        CHECK(schema.count({heading, key}) == 1);
    }
}
