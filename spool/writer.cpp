#include "spool/writer.hpp"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <utility>

#include "common/assert.hpp"
#include "common/log.hpp"
#include "common/metrics.hpp"

namespace spoold::spool {
namespace {

// Growing operations (new mail) stop short of a full map by this headroom, so deleting
// and recording outcomes, which need a few fresh pages themselves under copy-on-write,
// always fit: a map filled to the last page could otherwise never drain.
constexpr std::uint64_t kMinReservePages = 64;
constexpr std::uint64_t kReserveFraction = 32; // 1/32 of the map
constexpr std::uint64_t kPagesPerOp = 4;       // index and record pages an op may touch
constexpr std::uint64_t kPageSizeHint = 4080;  // body bytes per page (one chunk a page)

bool is_full(const Error& e) {
    return e.kind == ErrorKind::kSpoolFull || e.kind == ErrorKind::kDiskFull;
}

// LMDB reports a short pwrite() during commit as EIO, so a filesystem that filled up
// shows as an I/O error. When the disk is (nearly) full, say so: the client then hears
// 452 4.3.1 (insufficient storage) rather than 451 4.3.0.
Error disk_full_if_nearly_full(Error error, const std::string& path) {
    constexpr std::uintmax_t kNearlyFullBytes = 16ULL << 20U;
    if (error.kind != ErrorKind::kIo) {
        return error;
    }
    std::error_code ec;
    const auto fs = std::filesystem::space(path, ec);
    if (!ec && fs.available < kNearlyFullBytes) {
        error.kind = ErrorKind::kDiskFull;
        error.message += " (filesystem full)";
    }
    return error;
}

// Headroom for growing ops: what is free now minus the reserve, spent by each growing op's
// estimate; past it new mail is refused (spool full) while deletes and outcomes in the same
// batch still go through.
std::uint64_t growth_budget(const lmdb::Env& env, const lmdb::Txn& txn,
                            const UsedPages& used_pages) {
    std::uint64_t budget = std::numeric_limits<std::uint64_t>::max();
    if (const auto info = env.info(); info && info->page_size > 0) {
        const std::uint64_t map_pages = info->map_size / info->page_size;
        const std::uint64_t reserve = std::max(kMinReservePages, map_pages / kReserveFraction);
        if (const auto used = used_pages(txn); used) {
            budget = map_pages > *used + reserve ? map_pages - *used - reserve : 0;
        }
    }
    return budget;
}

} // namespace

bool may_be_dirty(const Error& e) {
    return e.kind == ErrorKind::kSpoolFull || e.kind == ErrorKind::kDiskFull ||
           e.kind == ErrorKind::kIo;
}

std::vector<Status> run_batch(lmdb::Env& env, std::vector<Op>& batch, const UsedPages& used_pages) {
    std::vector<Status> results(batch.size());
    std::vector<bool> failed(batch.size(), false);
    for (;;) {
        auto txn = env.begin_write();
        if (!txn) {
            for (std::size_t i = 0; i < batch.size(); ++i) {
                if (!failed[i]) {
                    results[i] = tl::unexpected(txn.error());
                }
            }
            return results;
        }
        std::uint64_t budget = growth_budget(env, *txn, used_pages);
        bool rerun = false;
        for (std::size_t i = 0; i < batch.size() && !rerun; ++i) {
            if (failed[i]) {
                continue;
            }
            if (batch[i].grows) {
                const std::uint64_t need = batch[i].bytes / kPageSizeHint + kPagesPerOp;
                if (need > budget) {
                    failed[i] = true;
                    results[i] = fail(ErrorKind::kSpoolFull, "spool map above its reserve");
                    continue;
                }
                budget -= need;
            }
            Status st = batch[i].apply(*txn);
            if (st || !may_be_dirty(st.error())) {
                results[i] = std::move(st);
                continue;
            }
            failed[i] = true;
            const bool full = is_full(st.error());
            results[i] = std::move(st);
            // Later ops that need new pages would hit the same full map: fail them now
            // rather than re-running the batch once for each of them.
            if (full) {
                for (std::size_t j = i + 1; j < batch.size(); ++j) {
                    if (!failed[j] && batch[j].grows) {
                        failed[j] = true;
                        results[j] = results[i];
                    }
                }
            }
            rerun = true;
        }
        if (rerun) {
            txn->abort();
            continue;
        }
        auto committed = txn->commit();
        if (!committed) {
            committed = tl::unexpected(disk_full_if_nearly_full(committed.error(), env.path()));
            log::warn("event=spool_commit_failed ops={} error={}", batch.size(),
                      log::quote(committed.error().describe()));
            for (std::size_t i = 0; i < batch.size(); ++i) {
                if (!failed[i]) {
                    results[i] = committed;
                }
            }
        }
        return results;
    }
}

Writer::Writer(lmdb::Env& env, Options options) : env_(env), options_(std::move(options)) {
    SPOOLD_ASSERT(options_.used_pages, "a writer without a page count cannot keep the reserve");
}

void Writer::start() {
    const std::lock_guard lock(mutex_);
    SPOOLD_ASSERT(!thread_.joinable() && !stopping_, "the writer started twice");
    thread_ = std::thread([this] { loop(); });
}

void Writer::submit(Op op) {
    {
        const std::lock_guard lock(mutex_);
        if (!stopping_ && thread_.joinable()) {
            if (op.first) {
                queue_.push_front(std::move(op));
            } else {
                queue_.push_back(std::move(op));
            }
            cv_.notify_one();
            return;
        }
    }
    if (op.done) {
        op.done(fail(ErrorKind::kShutdown, "spool is stopping"));
    }
}

void Writer::stop() {
    {
        const std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) {
        thread_.join();
    }
}

void Writer::loop() {
    auto last_periodic = std::chrono::steady_clock::now();
    std::vector<Op> batch;
    const std::size_t max_batch = std::max<std::size_t>(1, options_.max_batch);
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            const auto wake = [this] { return stopping_ || !queue_.empty(); };
            if (options_.periodic) {
                cv_.wait_for(lock, options_.periodic->period, wake);
            } else {
                cv_.wait(lock, wake);
            }
            if (queue_.empty() && stopping_) {
                return;
            }
            const std::size_t n = std::min(queue_.size(), max_batch);
            for (std::size_t i = 0; i < n; ++i) {
                batch.push_back(std::move(queue_.front()));
                queue_.pop_front();
            }
        }
        if (options_.periodic &&
            std::chrono::steady_clock::now() - last_periodic >= options_.periodic->period) {
            last_periodic = std::chrono::steady_clock::now();
            batch.push_back(options_.periodic->make());
        }
        if (!batch.empty()) {
            finish(batch);
        }
        batch.clear();
    }
}

void Writer::finish(std::vector<Op>& batch) {
    const auto started = std::chrono::steady_clock::now();
    std::vector<Status> results = run_batch(env_, batch, options_.used_pages);
    SPOOLD_ASSERT(results.size() == batch.size(), "a batch result per op");
    const auto took_us = std::chrono::duration_cast<std::chrono::microseconds>(
                             std::chrono::steady_clock::now() - started)
                             .count();
    log::debug("event=spool_batch ops={} us={}", batch.size(), took_us);
    auto& m = metrics::spoold_metrics();
    m.commit_batch_size.observe(static_cast<double>(batch.size()));
    m.commit_duration_seconds.observe(static_cast<double>(took_us) / 1e6);
    for (std::size_t i = 0; i < batch.size(); ++i) {
        if (batch[i].done) {
            batch[i].done(std::move(results[i]));
        }
    }
}

} // namespace spoold::spool
