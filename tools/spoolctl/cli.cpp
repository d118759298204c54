#include "tools/spoolctl/cli.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <fmt/format.h>
#include <string_view>

#include "policy/units.hpp"

namespace spoold::spoolctl {
namespace {

// "spoolctl help" is --help said as a verb; it needs no spool, so it is not in the table.
constexpr std::string_view kHelpVerb = "help";

using Setter = Status (*)(CommandLine& cl, std::string_view name, const std::string& value);

// One option: its name and short alias, the bit a verb takes it by (0 for the global
// options every verb takes), whether it takes a value, and what it sets.
struct Option {
    std::string_view name;
    std::string_view alias;
    OptionSet bit;
    bool takes_value;
    Setter set;
};

Status bad(std::string_view name, const std::string& value, std::string_view why) {
    return fail(ErrorKind::kInvalid, fmt::format("{} {}: {}", name, value, why));
}

Status set_address_pattern(CommandLine& cl, std::string_view name, const std::string& value) {
    auto p = AddressPattern::parse(value);
    if (!p) {
        return bad(name, value, "expected an address, @domain or domain");
    }
    (name == "--sender" ? cl.filter.senders : cl.filter.recipients).push_back(*p);
    return {};
}

Status set_age(CommandLine& cl, std::string_view name, const std::string& value) {
    const auto d = policy::parse_duration(value);
    if (!d) {
        return bad(name, value, d.error().message);
    }
    (name == "--older-than" ? cl.filter.older_than_ms : cl.filter.newer_than_ms) = d->count();
    return {};
}

Status set_size(CommandLine& cl, std::string_view name, const std::string& value) {
    const auto s = policy::parse_size(value);
    if (!s) {
        return bad(name, value, s.error().message);
    }
    (name == "--min-size" ? cl.filter.min_size : cl.filter.max_size) = *s;
    return {};
}

Status set_state(CommandLine& cl, std::string_view name, const std::string& value) {
    if (value == "ready") {
        cl.filter.state = spool::MsgState::kReady;
    } else if (value == "deferred") {
        cl.filter.state = spool::MsgState::kDeferred;
    } else if (value == "held") {
        cl.filter.state = spool::MsgState::kHeld;
    } else {
        return bad(name, value, "expected ready, deferred or held");
    }
    return {};
}

Status set_limit(CommandLine& cl, std::string_view name, const std::string& value) {
    std::size_t n = 0;
    const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc{} || ptr != value.data() + value.size() || value.empty()) {
        return bad(name, value, "expected a number");
    }
    cl.limit = n;
    return {};
}

Status set_to(CommandLine& cl, std::string_view, const std::string& value) {
    // "--to a@x,b@y" and "--to a@x --to b@y" both work.
    std::string_view rest(value);
    while (!rest.empty()) {
        const auto comma = rest.find(',');
        const auto item = rest.substr(0, comma);
        if (!item.empty()) {
            cl.to.emplace_back(item);
        }
        if (comma == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(comma + 1);
    }
    return {};
}

// A flag sets one bool of the command line.
template <bool CommandLine::*Member>
Status set_flag(CommandLine& cl, std::string_view, const std::string&) {
    cl.*Member = true;
    return {};
}

// A plain text value.
template <std::string CommandLine::*Member>
Status set_text(CommandLine& cl, std::string_view, const std::string& value) {
    cl.*Member = value;
    return {};
}

const std::array<Option, 27> kOptions = {{
    {"--spool", "", 0, true, set_text<&CommandLine::spool_path>},
    {"--config", "", 0, true, set_text<&CommandLine::config_path>},
    {"--help", "-h", 0, false, set_flag<&CommandLine::help>},
    {"--class", "", opt::kClass, true,
     [](CommandLine& cl, std::string_view, const std::string& value) -> Status {
         // For import it names the class to put messages in; elsewhere it is a filter.
         cl.class_filter = value;
         cl.import_class = value;
         return {};
     }},
    {"--state", "", opt::kState, true, set_state},
    {"--held", "", opt::kHeld, false,
     [](CommandLine& cl, std::string_view, const std::string&) -> Status {
         cl.filter.state = spool::MsgState::kHeld;
         return {};
     }},
    {"--sender", "", opt::kSender, true, set_address_pattern},
    {"--recipient", "", opt::kRecipient, true, set_address_pattern},
    {"--older-than", "", opt::kOlderThan, true, set_age},
    {"--newer-than", "", opt::kNewerThan, true, set_age},
    {"--min-size", "", opt::kMinSize, true, set_size},
    {"--max-size", "", opt::kMaxSize, true, set_size},
    {"--all", "", opt::kAll, false, set_flag<&CommandLine::all>},
    {"--limit", "", opt::kLimit, true, set_limit},
    {"--json", "", opt::kJson, false, set_flag<&CommandLine::json>},
    {"--no-header", "", opt::kNoHeader, false, set_flag<&CommandLine::no_header>},
    {"--yes", "-y", opt::kYes, false, set_flag<&CommandLine::yes>},
    {"--body", "", opt::kBody, false, set_flag<&CommandLine::body>},
    {"--bodies", "", opt::kBodies, false, set_flag<&CommandLine::bodies>},
    {"--repair", "", opt::kRepair, false, set_flag<&CommandLine::repair>},
    {"--mailstore", "", opt::kMailstore, true, set_text<&CommandLine::mailstore>},
    {"--dir", "", opt::kDir, true, set_text<&CommandLine::dir>},
    {"--mbox", "", opt::kMbox, true, set_text<&CommandLine::mbox>},
    {"--append", "", opt::kAppend, false, set_flag<&CommandLine::append>},
    {"--with-envelope", "", opt::kWithEnvelope, false, set_flag<&CommandLine::with_envelope>},
    {"--from", "", opt::kFrom, true,
     [](CommandLine& cl, std::string_view, const std::string& value) -> Status {
         cl.from = value == "<>" ? std::string() : value;
         return {};
     }},
    {"--to", "", opt::kTo, true, set_to},
}};

const Option* find_option(std::string_view name) {
    const auto* it = std::find_if(kOptions.begin(), kOptions.end(), [&](const Option& o) {
        return o.name == name || (!o.alias.empty() && o.alias == name);
    });
    return it == kOptions.end() ? nullptr : &*it;
}

// "list and export", "status, list and show".
std::string verbs_taking(OptionSet bit) {
    std::vector<std::string_view> names;
    for (const Verb& v : verbs()) {
        if ((v.options & bit) != 0) {
            names.push_back(v.name);
        }
    }
    std::string out;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i > 0) {
            out += i + 1 == names.size() ? " and " : ", ";
        }
        out += names[i];
    }
    return out;
}

// An option given that the verb does not take: the first in table order.
Status check_option_set(const CommandLine& cl) {
    const Verb* verb = find_verb(cl.verb);
    if (verb == nullptr) {
        return {};
    }
    const OptionSet extra = cl.options_given & ~verb->options;
    for (const Option& o : kOptions) {
        if ((extra & o.bit) != 0) {
            return fail(ErrorKind::kInvalid,
                        fmt::format("{} applies to {} only", o.name, verbs_taking(o.bit)));
        }
    }
    return {};
}

// The verbs' part of --help: each synopsis, and its help beside it from column 34 when
// the synopsis leaves room, else below it.
std::string verb_help() {
    constexpr std::size_t kIndent = 2;
    constexpr std::size_t kHelpColumn = 34;
    constexpr std::size_t kMinGap = 2;
    std::string out;
    for (const Verb& v : verbs()) {
        out.append(kIndent, ' ');
        out += v.synopsis;
        const std::size_t column = kIndent + v.synopsis.size();
        std::string_view help = v.help;
        bool first = true;
        while (!help.empty()) {
            const auto nl = help.find('\n');
            if (first && column + kMinGap <= kHelpColumn) {
                out.append(kHelpColumn - column, ' ');
            } else {
                out += '\n';
                out.append(kHelpColumn, ' ');
            }
            out += help.substr(0, nl);
            help = nl == std::string_view::npos ? std::string_view() : help.substr(nl + 1);
            first = false;
        }
        out += '\n';
    }
    return out;
}

} // namespace

Result<CommandLine> parse_command_line(const std::vector<std::string>& args) {
    CommandLine cl;
    bool options_done = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        if (!options_done && arg == "--") {
            options_done = true;
            continue;
        }
        if (!options_done && arg.size() > 1 && arg[0] == '-') {
            std::string name = arg;
            std::optional<std::string> value;
            if (const auto eq = arg.find('='); arg.starts_with("--") && eq != std::string::npos) {
                name = arg.substr(0, eq);
                value = arg.substr(eq + 1);
            }
            const Option* option = find_option(name);
            if (option != nullptr && option->takes_value) {
                if (!value) {
                    if (i + 1 >= args.size()) {
                        return fail(ErrorKind::kInvalid, fmt::format("{} needs a value", name));
                    }
                    value = args[++i];
                }
            } else if (value) {
                return fail(ErrorKind::kInvalid, fmt::format("{} takes no value", name));
            } else if (option == nullptr) {
                return fail(ErrorKind::kInvalid,
                            fmt::format("unknown option {} (see spoolctl --help)", name));
            }
            if (auto st = option->set(cl, name, value.value_or(std::string())); !st) {
                return tl::unexpected(st.error());
            }
            cl.options_given |= option->bit;
            continue;
        }
        if (cl.verb.empty()) {
            if (arg != kHelpVerb && find_verb(arg) == nullptr) {
                return fail(ErrorKind::kInvalid,
                            fmt::format("unknown verb '{}' (see spoolctl --help)", arg));
            }
            cl.verb = arg;
            continue;
        }
        cl.operands.push_back(arg);
    }
    if (cl.verb == kHelpVerb) {
        cl.help = true;
    }
    if (cl.verb.empty() && !cl.help) {
        return fail(ErrorKind::kInvalid, "no verb given (see spoolctl --help)");
    }
    if (cl.all && !cl.filter.empty()) {
        return fail(ErrorKind::kInvalid, "--all cannot be combined with a filter");
    }
    if (!cl.help) {
        if (auto st = check_option_set(cl); !st) {
            return tl::unexpected(st.error());
        }
    }
    return cl;
}

std::vector<OptionName> option_names() {
    std::vector<OptionName> out;
    out.reserve(kOptions.size());
    for (const Option& o : kOptions) {
        out.push_back(OptionName{o.name, o.alias, o.bit, o.takes_value});
    }
    return out;
}

std::string usage() {
    return fmt::format(R"(usage: spoolctl [--spool DIR | --config FILE] VERB [options] [operands]

The spool is --spool DIR, else spool.path of --config FILE, else of {}.
spoolctl works whether or not spoold runs: both open the same LMDB environment, and
changes made here are picked up by a running daemon.

Verbs:
{}
Filter (all given conditions must hold):
  --class NAME|N  --state ready|deferred|held  --held
  --sender ADDR|@DOMAIN|DOMAIN    --recipient ADDR|@DOMAIN|DOMAIN (recipients still waiting;
      ADDR is the user's mailbox: its +tag forms and aliases too, with --config)
  --older-than DUR  --newer-than DUR   (500ms, 90s, 15m, 2h, 3d, 1w: a unit is needed)
  --min-size SIZE  --max-size SIZE      (512 bytes, 10KiB, 5MiB, 1GiB; KB, MB, GB are 1000s)

Writes by filter or --all (hold, release, delete, flush, set-class, requeue) first
count what they would change and ask on the terminal ("hold 3 messages (12.0K)?");
--yes answers yes, and without a terminal --yes is required. Mail that arrives after
the question is left alone. Writes by queue id do not ask.

Envelopes in files:
  export writes each message as stored (our Received: line first). With --with-envelope
  it writes, above that, the envelope as header lines:
      X-Spoold-Envelope-From: <sender>
      X-Spoold-Envelope-To: <recipient>      (one per recipient still waiting)
      X-Spoold-Class: <class>
  An mbox From_ line always carries the sender and the arrival date.
  import takes the recipients from --to, else from that block at the very top of the
  file (the block is removed); the sender from --from, else the block, else the mbox
  From_ line; the class from --class, else the block, else the configured default.
  A message with no recipients or no sender is not imported and is reported; the files
  are never changed. Headers further down cannot supply an envelope, so a message from
  the Internet cannot choose its own recipients.

Exit status: 0 success, 1 failure or refused, 2 bad usage or no spool at the path.
)",
                       kDefaultConfig, verb_help());
}

} // namespace spoold::spoolctl
