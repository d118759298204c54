// libFuzzer target: a recipient directory file (list or passwd format, with or without a
// default domain) through parse_directory() and, from a real file, load_directory() (the
// DirectoryReader the daemon's loader reads with). Both must agree (the same entries, the same
// first error); entries are sorted, unique, lower-cased, "local@domain" or "@domain", never an
// alias of themselves. Input: 8 control bytes (format, default domain), then the file's bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

#include "common/log.hpp"
#include "policy/directory_file.hpp"
#include "tests/fuzz/fuzz_support.hpp"

using namespace spoold;
using namespace spoold::policy;
using fuzz::check;

namespace {

std::string g_file; // one scratch file per fuzzing process

} // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    char path[] = "/tmp/spoold-fuzz-directory.XXXXXX";
    const int fd = ::mkstemp(path);
    check(fd >= 0, "mkstemp failed");
    ::close(fd);
    g_file = path;
    std::atexit([] { std::remove(g_file.c_str()); });
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto [choices, text] = fuzz::split_input(data, size);
    DirectoryConfig config;
    config.file = g_file;
    config.format = choices.one_in(3) ? DirectoryFormat::kPasswd : DirectoryFormat::kList;
    config.default_domain = choices.one_in(2) ? "example.com" : "";

    const auto parsed = parse_directory(text, config, config.file);
    if (parsed) {
        for (std::size_t i = 0; i < parsed->size(); ++i) {
            const auto& e = (*parsed)[i];
            check(i == 0 || (*parsed)[i - 1].key < e.key, "entries not sorted and unique", e.key);
            const auto at = e.key.find('@');
            check(at != std::string::npos && at + 1 < e.key.size(), "a key without a domain",
                  e.key);
            check(std::none_of(e.key.begin(), e.key.end(),
                               [](char c) { return c >= 'A' && c <= 'Z'; }),
                  "a key not lower-cased", e.key);
            check(e.target != e.key, "an alias of itself", e.key);
            check(e.target.empty() || e.target.find('@') > 0, "a catch-all as a target", e.target);
        }
    }

    std::FILE* f = std::fopen(g_file.c_str(), "wb");
    check(f != nullptr, "cannot write the scratch file");
    check(std::fwrite(text.data(), 1, text.size(), f) == text.size(), "short write");
    std::fclose(f);
    const auto read = load_directory(config); // DirectoryReader, first line of a key kept
    check(parsed.has_value() == read.has_value(), "parse_directory and DirectoryReader disagree",
          parsed ? read.error().message : parsed.error().message);
    if (parsed) {
        check(*parsed == *read, "parse_directory and DirectoryReader give other entries");
    } else {
        check(parsed.error().message == read.error().message,
              "parse_directory and DirectoryReader report another error", read.error().message);
    }
    return 0;
}
