// One SMTP command line read into its verb and argument, and the verbs the server knows
// (one table, as OpenSMTPD's): pure text work, no state, no replies. Which command is
// allowed when, and what it answers, is the session's (smtp/session_commands.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spoold::smtp {

enum class Verb {
    kEhlo,
    kHelo,
    kMail,
    kRcpt,
    kData,
    kBdat,
    kRset,
    kNoop,
    kQuit,
    kVrfy,
    kExpn,
    kHelp,
    kStartTls,
    kProxy,
    kUnknown,
};

struct CommandLine {
    Verb verb = Verb::kUnknown;
    std::string_view verb_text; // as the client wrote it
    std::string_view arg;       // after the first space, trailing blanks removed
};

// Commands and arguments are printable ASCII (and UTF-8 under SMTPUTF8); a control byte
// (other than a tab) in a command line is garbage or an attack on whoever logs it.
bool has_control(std::string_view line);

// `line` without its line end. The verb is matched without regard to case; views into `line`.
CommandLine parse_command_line(std::string_view line);

// The HELP reply's text: the verbs the table marks as listed, in table order.
const std::string& help_text();

// "FROM:<a@b>" with prefix "FROM:" → "<a@b>": the argument after a case-insensitive prefix
// and the spaces after it ("MAIL FROM: <a@b>" is common enough to accept); nullopt when
// the prefix is missing.
std::optional<std::string_view> after_prefix(std::string_view arg, std::string_view prefix);

// BDAT's argument: "size" or "size LAST" (LAST in any case).
struct BdatArgs {
    std::uint64_t size = 0;
    bool last = false;
};
std::optional<BdatArgs> parse_bdat_args(std::string_view arg);

// ESMTP parameters as filters receive them: one string per parameter (runs of spaces
// separate, none are empty).
std::vector<std::string> split_params(std::string_view text);

} // namespace spoold::smtp
