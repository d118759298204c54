// The spoolctl verbs, each run against an open spool. Output goes to the given streams;
// exit codes are decided here. Opening the spool and reading the config are main's job.
#pragma once

#include <cstdio>
#include <memory>

#include "common/clock.hpp"
#include "policy/config.hpp"
#include "spool/spool.hpp"
#include "tools/spoolctl/cli.hpp"
#include "tools/spoolctl/render.hpp"

namespace spoold::spoolctl {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1; // a verb failed, found problems, or was refused
inline constexpr int kExitUsage = 2;  // bad command line, or no spool at the path

struct Context {
    CommandLine cl;
    spool::Spool* spool = nullptr;
    ClassNames classes;
    std::shared_ptr<const policy::Config> config; // null when spoolctl runs on --spool alone
    // How a --recipient address stands for its mailbox (see for_mailboxes): the config's
    // recipient_delimiter (0: none) and the directory's aliases (empty: none).
    char recipient_delimiter = 0;
    AliasesOf aliases_of;
    const Clock* clock = &SystemClock::instance();
    std::FILE* out = stdout;
    std::FILE* err = stderr;
};

// True for verbs that never write, so the spool can be opened without a writer.
bool is_read_only(const CommandLine& cl);

// Runs the verb ctx.cl names (tools/spoolctl/verb_table.cpp) and returns the exit code.
int run_verb(Context& ctx);

// The verbs the table names, each returning the exit code; the writes are in
// tools/spoolctl/writes.cpp and requeue.cpp, export and import in export_import.hpp.
int verb_status(Context& ctx);
int verb_list(Context& ctx);
int verb_show(Context& ctx);
int verb_hold(Context& ctx);
int verb_release(Context& ctx);
int verb_delete(Context& ctx);
int verb_flush(Context& ctx);
int verb_set_class(Context& ctx);
int verb_requeue(Context& ctx);
int verb_pause(Context& ctx);
int verb_resume(Context& ctx);
int verb_check(Context& ctx);

} // namespace spoold::spoolctl
