// The group-commit writer: one thread takes the queued operations, applies up to max_batch of
// them in one LMDB write transaction, commits once, and only then calls each one's Done.
// It knows nothing of records or indexes: an operation is a function on the transaction.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "common/result.hpp"
#include "spool/lmdb/lmdb.hpp"
#include "spool/spool.hpp"

namespace spoold::spool {

struct Op {
    // Runs inside the batch's transaction. Must be re-runnable: a batch is re-applied without
    // a failed op, so apply never consumes its captured inputs.
    std::function<Status(lmdb::WriteTxn&)> apply;
    Done done;             // may be empty
    bool grows = false;    // needs new pages (new mail): refused first when the map is nearly full
    std::size_t bytes = 0; // new data it writes, for the headroom estimate of growing ops
    // Housekeeping that must not wait behind a queue of intake (promotion, expiry): goes to
    // the front of the queue, so it is in the next batch.
    bool first = false;
};

// Whether an op that failed with `e` may have left some of its writes in the transaction:
// only LMDB's own failures can; every op checks its preconditions (not found, invalid, id
// collision) before its first write, and such a failure leaves the batch's txn clean.
bool may_be_dirty(const Error& e);

// Pages the spool's tables hold in a transaction's view (tables.hpp's used_pages).
using UsedPages = std::function<Result<std::uint64_t>(const lmdb::Txn&)>;

// Applies `batch` in one write transaction and commits once; returns each op's result, the
// commit's error for every op that applied when the commit fails. An op that fails in a way
// that may leave its writes behind is taken out and the batch re-run without it, so one bad
// op never fails the others. Growing ops stop short of a full map by a reserve (1/32 of the
// map, at least 64 pages): past it they fail with kSpoolFull while the rest still commit.
std::vector<Status> run_batch(lmdb::Env& env, std::vector<Op>& batch, const UsedPages& used_pages);

class Writer {
public:
    // An op added to a batch once per period, whether or not there is other work.
    struct Periodic {
        std::chrono::steady_clock::duration period;
        std::function<Op()> make;
    };
    struct Options {
        std::size_t max_batch = 4096;
        UsedPages used_pages;
        std::optional<Periodic> periodic;
    };

    Writer(lmdb::Env& env, Options options);
    ~Writer() { stop(); }
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    void start();
    // Queues `op`. Its Done runs on the writer thread after the commit returned, or at once
    // with kShutdown when the writer is not running.
    void submit(Op op);
    // Applies everything already queued, then joins the thread.
    void stop();

private:
    void loop();
    // One batch: run, account, then the Dones.
    void finish(std::vector<Op>& batch);

    lmdb::Env& env_;
    Options options_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Op> queue_;
    bool stopping_ = false;
    std::thread thread_;
};

} // namespace spoold::spool
