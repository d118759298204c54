#include <doctest/doctest.h>

#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/mdoc_items.hpp"
#include "tools/spoolctl/cli.hpp"

using namespace spoold;
using namespace spoold::spoolctl;
using spoold::testing::first_word_after;
using spoold::testing::mdoc_items;

namespace {

const std::string kPage = SPOOLD_SOURCE_DIR "/man/spoolctl.8";

std::vector<std::string> words(const std::string& line) {
    std::istringstream in(line);
    std::vector<std::string> out;
    for (std::string w; in >> w;) {
        out.push_back(w);
    }
    return out;
}

// "Fl y" as its own flag, not the start of "Fl Fl yes".
bool has_short_flag(const std::string& line, std::string_view alias) {
    const auto w = words(line);
    for (std::size_t i = 0; i + 1 < w.size(); ++i) {
        if (w[i] == "Fl" && w[i + 1] == alias.substr(1) && (i == 0 || w[i - 1] != "Fl")) {
            return true;
        }
    }
    return false;
}

} // namespace

TEST_CASE("spoolctl(8) lists every verb of the verb table under VERBS, and no other") {
    const auto items = mdoc_items(kPage);
    REQUIRE(!items.empty());
    std::set<std::string> documented;
    for (const auto& item : items) {
        if (item.heading == "VERBS") {
            const std::string verb = first_word_after(item.line, "Cm ");
            CAPTURE(item.line);
            CHECK(!verb.empty());
            CHECK(documented.insert(verb).second);
        }
    }
    std::set<std::string> table;
    for (const Verb& v : verbs()) {
        table.emplace(v.name);
    }
    CHECK(table.size() > 10);
    CHECK(documented == table);
}

TEST_CASE("spoolctl(8) has an item for every option with its short alias, and for no other") {
    const auto items = mdoc_items(kPage);
    REQUIRE(!items.empty());
    std::map<std::string, std::string> documented; // "--limit" -> its item line
    for (const auto& item : items) {
        if (const std::string name = first_word_after(item.line, "Fl Fl "); !name.empty()) {
            documented.emplace("--" + name, item.line);
        }
    }
    std::set<std::string> real;
    for (const OptionName& o : option_names()) {
        CAPTURE(o.name);
        real.emplace(o.name);
        const auto it = documented.find(std::string(o.name));
        REQUIRE(it != documented.end());
        if (!o.alias.empty()) {
            CHECK(has_short_flag(it->second, o.alias));
        }
        // An option that takes a value shows it: ".It Fl Fl limit Ar n".
        CHECK((it->second.find(" Ar ") != std::string::npos ||
               it->second.find(" Cm ") != std::string::npos) == o.takes_value);
    }
    CHECK(real.size() > 20);
    for (const auto& [name, line] : documented) {
        CAPTURE(line);
        CHECK(real.count(name) == 1);
    }
}
