#include "tools/spoolctl/verb_table.hpp"

#include <algorithm>
#include <array>

#include "tools/spoolctl/export_import.hpp"
#include "tools/spoolctl/fleet_verb.hpp"
#include "tools/spoolctl/verb_support.hpp"
#include "tools/spoolctl/xfer.hpp"

namespace spoold::spoolctl {
namespace {

using namespace opt;

// Writes by filter or --all ask first; --yes answers (tools/spoolctl/writes.hpp).
constexpr OptionSet kWriteOptions = kFilter | kAll | kJson | kYes;

const std::array<Verb, 16> kVerbs = {{
    {"status", false, 0, kJson, "status [--json]",
     "messages and bytes per class and state, oldest message,\n"
     "breaker and drain rate per mailstore, paused or not",
     verb_status},
    {"list", false, 0, kFilter | kAll | kLimit | kJson | kNoHeader,
     "list [FILTER] [--limit N] [--json] [--no-header]",
     "one line (or JSON object) per message; streams", verb_list},
    {"show", false, 0, kBody | kJson, "show ID [--body] [--json]",
     "envelope, each recipient's state and last reply, headers", verb_show},
    {"hold", true, 0, kWriteOptions, "hold    ID... | FILTER | --all",
     "stop messages from draining", verb_hold},
    {"release", true, 0, kWriteOptions, "release ID... | FILTER | --all",
     "let held messages drain again", verb_release},
    {"delete", true, 0, kWriteOptions, "delete  ID... | FILTER | --all", "remove messages",
     verb_delete},
    {"flush", true, 0, kWriteOptions, "flush   [ID... | FILTER]",
     "deferred recipients become ready now (default: all); spoold looks at all ready mail again",
     verb_flush},
    {"set-class", true, 0, kWriteOptions, "set-class ID... CLASS | set-class FILTER CLASS",
     "move messages to another priority class", verb_set_class},
    {"requeue", true, 0, kWriteOptions, "requeue ID... | FILTER | --all",
     "as postsuper -r: the class from today's rules, the\n"
     "expiry from arrival and that class's retention,\n"
     "deferred recipients tried now (needs the config)",
     verb_requeue},
    {"pause", true, 0, kMailstore, "pause  [--mailstore NAME]",
     "stop the drain (all mailstores or one)", verb_pause},
    {"resume", true, 0, kMailstore, "resume [--mailstore NAME]", "start it again", verb_resume},
    {"export", false, 0, kFilter | kAll | kLimit | kDir | kMbox | kAppend | kWithEnvelope,
     "export ID... | FILTER | --all  (--dir DIR | --mbox FILE [--append]) [--with-envelope]",
     "DIR/<queue id>.eml per message, or one mboxrd file", verb_export},
    {"import", true, 0, kMbox | kTo | kFrom | kClass,
     "import (FILE.eml | DIR)... | --mbox FILE  [--to ADDR]... [--from ADDR] [--class NAME]", "",
     verb_import},
    {"check", false, kRepair, kBodies | kRepair | kJson, "check [--bodies] [--repair] [--json]",
     "every index entry against its record and back, counters\n"
     "against a scan, in short snapshots (safe while spoold runs);\n"
     "--bodies also reads every body; --repair rebuilds the\n"
     "indexes and counters from the records (never deletes)",
     verb_check},
    {"fleet", false, 0, kJson, "fleet status [--json]",
     "every live node of the fleet (backlog per class, oldest,\n"
     "drain rate, breaker and budget per mailstore), the totals\n"
     "and who holds each mailstore's slots; reads Redis\n"
     "(needs --config with fleet.redis)",
     verb_fleet},
    {"xfer", true, 0, kWriteOptions | kTo, "xfer --to HOST:PORT  ID... | FILTER | --all",
     "move messages to a peer spoold over SMTP, each removed\n"
     "only after the peer's 250 (held meanwhile, released on\n"
     "failure); class, arrival and expiry kept when the peer\n"
     "lists us in xfer.peers",
     verb_xfer},
}};

} // namespace

std::span<const Verb> verbs() { return kVerbs; }

const Verb* find_verb(std::string_view name) {
    const auto* it =
        std::find_if(kVerbs.begin(), kVerbs.end(), [&](const Verb& v) { return v.name == name; });
    return it == kVerbs.end() ? nullptr : &*it;
}

bool is_read_only(const CommandLine& cl) {
    const Verb* verb = find_verb(cl.verb);
    return verb != nullptr && !verb->writes && (cl.options_given & verb->writes_with) == 0;
}

int run_verb(Context& ctx) {
    const Verb* verb = find_verb(ctx.cl.verb);
    if (verb == nullptr) {
        return usage_error(ctx, "unknown verb");
    }
    return verb->run(ctx);
}

} // namespace spoold::spoolctl
