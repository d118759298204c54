// libFuzzer target: policy::parse_config on arbitrary text. It must never throw or crash,
// must give one "name:line:column: message" error or a Config that passes the same checks
// the daemon relies on (its classifier compiles, the default class exists).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "policy/classifier.hpp"
#include "policy/config.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace spoold;
using spoold::fuzz::check;
using namespace spoold::policy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    const auto config = parse_config(text, "fuzz.yaml");
    if (!config) {
        check(config.error().kind == ErrorKind::kConfig, "a config error of another kind",
              config.error().describe());
        check(config.error().message.starts_with("fuzz.yaml"), "an error without the file name",
              config.error().message);
        return 0;
    }
    const Config& c = **config;
    check(!c.classes.empty() && c.classes.size() <= kMaxClasses, "class count out of range");
    check(c.class_id(c.default_class).has_value(), "the default class is not a class",
          c.default_class);
    for (const auto& rule : c.rules) {
        check(c.class_id(rule.klass).has_value(), "a rule names an unknown class", rule.klass);
    }
    check(!c.local_domains.empty(), "no local domain");
    const auto classifier = Classifier::compile(c);
    check(classifier.has_value(), "a loaded config whose classifier does not compile",
          classifier ? std::string() : classifier.error().describe());
    return 0;
}
