// Reads the tagged-list items of an mdoc(7) man page in the source tree, with the section
// or subsection heading each sits under, so tests can check a page against the tables the
// code really uses. Not an mdoc parser: only ".Sh", ".Ss" and ".It" lines are looked at.
#pragma once

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace spoold::testing {

struct MdocItem {
    std::string heading; // text of the last .Sh or .Ss line above it ("VERBS", "limits")
    std::string line;    // the .It line without ".It " ("Cm list Op Fl Fl json")
};

// Empty when the file cannot be read (the caller's REQUIRE on the size says so).
inline std::vector<MdocItem> mdoc_items(const std::string& path) {
    std::ifstream in(path);
    std::vector<MdocItem> out;
    std::string heading;
    for (std::string line; std::getline(in, line);) {
        if (line.starts_with(".Sh ") || line.starts_with(".Ss ")) {
            heading = line.substr(4);
        } else if (line.starts_with(".It ")) {
            out.push_back(MdocItem{heading, line.substr(4)});
        }
    }
    return out;
}

// The word after `macro` at the start of an item line: first_word_after("Cm list Op", "Cm ")
// is "list"; "" when the line does not start with it.
inline std::string first_word_after(const std::string& line, const std::string& macro) {
    if (!line.starts_with(macro)) {
        return "";
    }
    std::istringstream words(line.substr(macro.size()));
    std::string word;
    words >> word;
    return word;
}

} // namespace spoold::testing
