#include "tools/spoolctl/cli.hpp"

#include <charconv>
#include <fmt/format.h>
#include <set>
#include <string_view>

#include "tools/spoolctl/units.hpp"

namespace spoold::spoolctl {
namespace {

const std::set<std::string, std::less<>> kVerbs = {
    "status",    "list",  "show",   "hold",   "release", "delete", "flush",
    "set-class", "pause", "resume", "export", "import",  "check",  "help"};

// Options that take a value; every other option is a flag.
const std::set<std::string, std::less<>> kValued = {
    "--spool",      "--config",     "--class",    "--state",    "--sender", "--recipient",
    "--older-than", "--newer-than", "--min-size", "--max-size", "--limit",  "--mbox",
    "--dir",        "--mailstore",  "--from",     "--to"};

Status set_option(CommandLine& cl, std::string_view name, const std::string& value) {
    auto bad = [&](std::string_view why) {
        return fail(ErrorKind::kInvalid, fmt::format("{} {}: {}", name, value, why));
    };
    if (name == "--spool") {
        cl.spool_path = value;
    } else if (name == "--config") {
        cl.config_path = value;
    } else if (name == "--class") {
        // For import it names the class to put messages in; elsewhere it is a filter.
        cl.class_filter = value;
        cl.import_class = value;
    } else if (name == "--state") {
        if (value == "ready") {
            cl.filter.state = spool::MsgState::kReady;
        } else if (value == "deferred") {
            cl.filter.state = spool::MsgState::kDeferred;
        } else if (value == "held") {
            cl.filter.state = spool::MsgState::kHeld;
        } else {
            return bad("expected ready, deferred or held");
        }
    } else if (name == "--sender" || name == "--recipient") {
        auto p = AddressPattern::parse(value);
        if (!p) {
            return bad("expected an address, @domain or domain");
        }
        (name == "--sender" ? cl.filter.senders : cl.filter.recipients).push_back(*p);
    } else if (name == "--older-than" || name == "--newer-than") {
        const auto d = parse_duration_ms(value);
        if (!d) {
            return bad("expected a duration such as 90s, 15m, 2h, 3d or 1w");
        }
        (name == "--older-than" ? cl.filter.older_than_ms : cl.filter.newer_than_ms) = *d;
    } else if (name == "--min-size" || name == "--max-size") {
        const auto s = parse_size(value);
        if (!s) {
            return bad("expected a size such as 512, 10k, 5M or 1G");
        }
        (name == "--min-size" ? cl.filter.min_size : cl.filter.max_size) = *s;
    } else if (name == "--limit") {
        std::size_t n = 0;
        const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (ec != std::errc{} || ptr != value.data() + value.size() || value.empty()) {
            return bad("expected a number");
        }
        cl.limit = n;
    } else if (name == "--mbox") {
        cl.mbox = value;
    } else if (name == "--dir") {
        cl.dir = value;
    } else if (name == "--mailstore") {
        cl.mailstore = value;
    } else if (name == "--from") {
        cl.from = value == "<>" ? std::string() : value;
    } else if (name == "--to") {
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
    }
    return {};
}

Status set_flag(CommandLine& cl, std::string_view name) {
    if (name == "--json") {
        cl.json = true;
    } else if (name == "--yes" || name == "-y") {
        cl.yes = true;
    } else if (name == "--all") {
        cl.all = true;
    } else if (name == "--held") {
        cl.filter.state = spool::MsgState::kHeld;
    } else if (name == "--body") {
        cl.body = true;
    } else if (name == "--repair") {
        cl.repair = true;
    } else if (name == "--bodies") {
        cl.bodies = true;
    } else if (name == "--with-envelope") {
        cl.with_envelope = true;
    } else if (name == "--append") {
        cl.append = true;
    } else if (name == "--no-header") {
        cl.no_header = true;
    } else if (name == "--help" || name == "-h") {
        cl.help = true;
    } else {
        return fail(ErrorKind::kInvalid,
                    fmt::format("unknown option {} (see spoolctl --help)", name));
    }
    return {};
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
            if (kValued.contains(name)) {
                if (!value) {
                    if (i + 1 >= args.size()) {
                        return fail(ErrorKind::kInvalid, fmt::format("{} needs a value", name));
                    }
                    value = args[++i];
                }
                if (auto st = set_option(cl, name, *value); !st) {
                    return tl::unexpected(st.error());
                }
                continue;
            }
            if (value) {
                return fail(ErrorKind::kInvalid, fmt::format("{} takes no value", name));
            }
            if (auto st = set_flag(cl, name); !st) {
                return tl::unexpected(st.error());
            }
            continue;
        }
        if (cl.verb.empty()) {
            if (!kVerbs.contains(arg)) {
                return fail(ErrorKind::kInvalid,
                            fmt::format("unknown verb '{}' (see spoolctl --help)", arg));
            }
            cl.verb = arg;
            continue;
        }
        cl.operands.push_back(arg);
    }
    if (cl.verb == "help") {
        cl.help = true;
    }
    if (cl.verb.empty() && !cl.help) {
        return fail(ErrorKind::kInvalid, "no verb given (see spoolctl --help)");
    }
    if (cl.all && !cl.filter.empty()) {
        return fail(ErrorKind::kInvalid, "--all cannot be combined with a filter");
    }
    if (cl.limit && cl.verb != "list" && cl.verb != "export") {
        return fail(ErrorKind::kInvalid, "--limit applies to list and export only");
    }
    return cl;
}

std::string usage() {
    return fmt::format(R"(usage: spoolctl [--spool DIR | --config FILE] VERB [options] [operands]

The spool is --spool DIR, else spool.path of --config FILE, else of {}.
spoolctl works whether or not spoold runs: both open the same LMDB environment, and
changes made here are picked up by a running daemon.

Verbs:
  status [--json]                 messages and bytes per class and state, oldest message,
                                  breaker and drain rate per mailstore, paused or not
  list [FILTER] [--limit N] [--json] [--no-header]
                                  one line (or JSON object) per message; streams
  show ID [--body] [--json]       envelope, each recipient's state and last reply, headers
  hold    ID... | FILTER | --all  stop messages from draining
  release ID... | FILTER | --all  let held messages drain again
  delete  ID... | FILTER | --all  remove messages; a filter or --all asks for confirmation
                                  on the terminal (--yes to skip; without a terminal,
                                  --yes is required)
  flush   [ID... | FILTER]        deferred recipients become ready now (default: all)
  set-class ID... CLASS | set-class FILTER CLASS
                                  move messages to another priority class
  pause  [--mailstore NAME]       stop the drain (all mailstores or one)
  resume [--mailstore NAME]       start it again
  export ID... | FILTER | --all  (--dir DIR | --mbox FILE [--append]) [--with-envelope]
                                  DIR/<queue id>.eml per message, or one mboxrd file
  import (FILE.eml | DIR)... | --mbox FILE  [--to ADDR]... [--from ADDR] [--class NAME]
  check [--bodies] [--repair] [--json]
                                  every index entry against its record and back, counters
                                  against a scan, in one snapshot (safe while spoold runs);
                                  --bodies also reads every body; --repair rebuilds the
                                  indexes and counters from the records (never deletes)

Filter (all given conditions must hold):
  --class NAME|N  --state ready|deferred|held  --held
  --sender ADDR|@DOMAIN|DOMAIN    --recipient ADDR|@DOMAIN|DOMAIN (recipients still waiting)
  --older-than DUR  --newer-than DUR   (90s, 15m, 2h, 3d, 1w, 1d12h)
  --min-size SIZE  --max-size SIZE      (512, 10k, 5M, 1G)

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
                       kDefaultConfig);
}

} // namespace spoold::spoolctl
