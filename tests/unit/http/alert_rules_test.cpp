#include <doctest/doctest.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "common/metrics.hpp"

using namespace spoold::metrics;

TEST_CASE("the shipped alert rules use only metrics and labels spoold exports") {
    std::ifstream in(SPOOLD_SOURCE_DIR "/etc/prometheus/spoold-alerts.yml");
    REQUIRE(in);
    std::stringstream rules;
    rules << in.rdbuf();

    Registry r;
    const SpooldMetrics m(r);
    const std::string exported = r.render_prometheus();
    std::set<std::string> names;
    const std::regex type_line(R"(# TYPE (spoold_[a-z_]+) )");
    for (std::sregex_iterator it(exported.begin(), exported.end(), type_line), end; it != end;
         ++it) {
        names.insert((*it)[1]);
    }
    CHECK(names.size() > 15);

    const std::string text = rules.str();
    const std::regex used(R"(spoold_[a-z_]+)");
    std::set<std::string> in_rules;
    for (std::sregex_iterator it(text.begin(), text.end(), used), end; it != end; ++it) {
        in_rules.insert(it->str());
    }
    CHECK(in_rules.size() > 5);
    for (const auto& name : in_rules) {
        CAPTURE(name);
        CHECK(names.count(name) == 1);
    }
    // The label values the rules match on are the ones the code writes.
    CHECK(text.find("reason=\"" + std::string(kRejectSpoolFull) + "\"") != std::string::npos);
    CHECK(text.find("outcome=\"" + std::string(kOutcomeFailed) + "\"") != std::string::npos);
    CHECK(text.find("state=\"" + std::string(kStateReady) + "\"") != std::string::npos);
}
