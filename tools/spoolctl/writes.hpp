// What spoolctl's write verbs (hold, release, delete, flush, set-class, requeue) share: the
// selection by ids, filter or --all, the question a filter asks before anything changes,
// the bounded pipeline of writes and the report. What each verb does is its WriteOp.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "tools/spoolctl/verbs.hpp"

namespace spoold::spoolctl {

struct WriteOp {
    std::string_view done_word; // "held" in "held 3 messages"
    std::string question_tail;  // " to bulk" in "set-class 3 messages (12.0K) to bulk?"
    // Whether the operation would change the message at all: by filter, the others are
    // neither counted nor rewritten ("hold everything from this sender" skips the held).
    std::function<bool(const spool::Envelope&)> applies;
    // Submits the write for one message; `done` is called on the spool's writer thread.
    std::function<void(spool::Spool&, const spool::Envelope&, spool::Done)> apply;
    bool default_all = false; // no ids and no filter mean every message (flush)
    // Appended to the text report ("requeued 3 messages" + detail), after the writes.
    std::function<std::string()> detail;
};

// By ids: acts on each at once. By filter or --all: counts what would change, asks on the
// terminal ("hold 3 messages (12.0K)?"; --yes answers, and without a terminal --yes is
// required), then acts on those counted; mail that arrived after the question is left
// alone. Returns the exit code.
int run_writes(Context& ctx, const std::vector<std::string>& operands, const WriteOp& op);

// Has a running spoold's scheduler look at every ready message again (its cursors go back to
// the front at its next refresh): the ready epoch moves. For flush, and for import, whose
// messages got their ids in this process and may commit behind the daemon's cursors.
Status kick_scheduler(spool::Spool& s);

} // namespace spoold::spoolctl
