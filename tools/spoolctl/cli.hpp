// spoolctl's command line: global options, the verb, its options and operands, parsed
// into one plain struct, plus the --help text, both driven by the verb table (which verbs
// exist, which options each takes). Validation that needs the spool (class names, queue
// ids that exist) happens in the verbs, not here.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "tools/spoolctl/filter.hpp"
#include "tools/spoolctl/verb_table.hpp"

namespace spoold::spoolctl {

inline constexpr const char* kDefaultConfig = "/etc/spoold/spoold.yaml";

struct CommandLine {
    std::string spool_path;  // --spool
    std::string config_path; // --config
    std::string verb;
    std::vector<std::string> operands; // queue ids, files, a class name: whatever the verb takes

    Filter filter;                           // everything but the class, which needs the names
    std::optional<std::string> class_filter; // --class, resolved once the names are known
    bool all = false;                        // --all: the empty filter, said explicitly
    std::optional<std::size_t> limit;

    bool json = false;
    bool yes = false;
    bool body = false;                       // show --body
    bool repair = false;                     // check --repair
    bool bodies = false;                     // check --bodies: also read every body
    bool with_envelope = false;              // export --with-envelope
    bool append = false;                     // export --mbox ... --append
    bool no_header = false;                  // list --no-header
    std::string mbox;                        // export/import --mbox FILE
    std::string dir;                         // export --dir DIR
    std::string mailstore;                   // pause/resume --mailstore NAME
    std::optional<std::string> from;         // import --from ADDRESS ("" = null sender)
    std::vector<std::string> to;             // import --to ADDRESS (repeatable)
    std::optional<std::string> import_class; // import --class NAME

    bool help = false;
    OptionSet options_given = 0; // every option given, for the verb's option set
};

// Parses argv (without argv[0]). Errors are kInvalid with a message for the operator,
// among them an option the verb does not take (unless --help is given: help wins).
Result<CommandLine> parse_command_line(const std::vector<std::string>& args);

std::string usage();

// Every option as written on the command line, for checks that the man page and the shell
// completion name them all: its short alias ("" if none), the bit a verb takes it by (0
// for the global options every verb takes), and whether a value follows it.
struct OptionName {
    std::string_view name;
    std::string_view alias;
    OptionSet bit;
    bool takes_value;
};
std::vector<OptionName> option_names();

} // namespace spoold::spoolctl
