// Parses configuration text for unit tests: the error a bad text gets, or the Config a good
// one gives. Writes no files; loading from disk stays with policy::load_config.
#pragma once

#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "policy/config.hpp"

namespace spoold::testing {

// The config error's message ("test.yaml:3:5: ..."), or "(no error)" when the text loads.
inline std::string error_of(const std::string& text) {
    auto config = policy::parse_config(text, "test.yaml");
    if (config) {
        return "(no error)";
    }
    CHECK(config.error().kind == ErrorKind::kConfig);
    return config.error().message;
}

// The parsed configuration; the test stops here if the text does not load. `path` is where
// the text claims to come from: relative paths in it resolve against its folder.
inline std::shared_ptr<const policy::Config> parsed_config(const std::string& text,
                                                           const std::string& path = "test.yaml") {
    auto config = policy::parse_config(text, path);
    REQUIRE_MESSAGE(config, (config ? "" : config.error().message));
    return *config;
}

} // namespace spoold::testing
