#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "tools/spoolctl/cli.hpp"

using namespace spoold;
using namespace spoold::spoolctl;

namespace {

using Words = std::set<std::string>;

Words split(const std::string& text) {
    std::istringstream in(text);
    Words out;
    for (std::string w; in >> w;) {
        out.insert(w);
    }
    return out;
}

// The lists etc/bash-completion/spoolctl writes out: its variables and its per-verb lines.
struct Completion {
    std::map<std::string, Words> variables; // "_spoolctl_verbs" -> words
    std::map<std::string, Words> per_verb;  // "list" -> its options
};

Completion read_completion() {
    std::ifstream in(SPOOLD_SOURCE_DIR "/etc/bash-completion/spoolctl");
    REQUIRE(in);
    const std::regex variable(R"re(^(_spoolctl_[a-z_]+)="([^"]*)"$)re");
    const std::regex verb_line(R"re(^    ([a-z-]+)\) echo "([^"]*)" ;;$)re");
    Completion c;
    std::smatch m;
    for (std::string line; std::getline(in, line);) {
        if (std::regex_match(line, m, variable)) {
            c.variables[m[1]] = split(m[2]);
        } else if (std::regex_match(line, m, verb_line)) {
            CHECK(c.per_verb.emplace(m[1], split(m[2])).second);
        }
    }
    return c;
}

// An option as the user may type it: its name and its short alias.
void add_spellings(Words& out, const OptionName& o) {
    out.emplace(o.name);
    if (!o.alias.empty()) {
        out.emplace(o.alias);
    }
}

} // namespace

TEST_CASE("the bash completion offers exactly the verbs of the verb table") {
    const Completion c = read_completion();
    Words table;
    for (const Verb& v : verbs()) {
        table.emplace(v.name);
    }
    CHECK(table.size() > 10);
    CHECK(c.variables.at("_spoolctl_verbs") == table);
    Words with_lines;
    for (const auto& [verb, options] : c.per_verb) {
        with_lines.insert(verb);
    }
    CHECK(with_lines == table);
}

TEST_CASE("the bash completion offers each verb exactly the options the verb takes") {
    const Completion c = read_completion();
    Words global;
    Words with_value;
    for (const OptionName& o : option_names()) {
        if (o.bit == 0) {
            add_spellings(global, o);
        }
        if (o.takes_value) {
            with_value.emplace(o.name);
        }
    }
    CHECK(c.variables.at("_spoolctl_global_options") == global);
    // After one of these the next word is a value, not the verb.
    CHECK(c.variables.at("_spoolctl_value_options") == with_value);
    for (const Verb& v : verbs()) {
        CAPTURE(v.name);
        Words takes;
        for (const OptionName& o : option_names()) {
            if ((o.bit & v.options) != 0) {
                add_spellings(takes, o);
            }
        }
        REQUIRE(c.per_verb.count(std::string(v.name)) == 1);
        CHECK(c.per_verb.at(std::string(v.name)) == takes);
    }
}
