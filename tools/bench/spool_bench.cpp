// spool_bench: measures the spool on one disk in one run: (a) the raw LMDB ceiling,
// (b) group-commit enqueues from concurrent producers, (c) one commit per message,
// (d) sustained churn. Prints medians and the target ratios; not a unit test.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "common/log.hpp"
#include "spool/lmdb/lmdb.hpp"
#include "spool/record.hpp"
#include "spool/spool.hpp"

namespace {

using namespace spoold;
using namespace spoold::spool;
using Clock = std::chrono::steady_clock;

struct Args {
    std::string dir = "spool_bench.tmp";
    int runs = 3;
    std::size_t count = 20'000;  // messages for (a) and (b)
    std::size_t count_c = 1'000; // messages for (c): one fsync each, so fewer
    std::size_t producers = 32;
    std::size_t window = 8; // enqueues in flight per producer (sessions per thread)
    std::size_t size = 10 * 1024;
    std::vector<std::size_t> sizes; // --sizes a,b,c: cycle through these instead of --size
    std::size_t k = 100;            // puts per durable commit in (a)
    std::size_t resident = 200'000;
    std::size_t churn = 1'000'000;
    std::size_t chunk = 0; // body chunk bytes for (b)-(d); 0 = the spool's default
    std::string only = "abcd";
};

[[noreturn]] void usage() {
    std::fprintf(
        stderr,
        "usage: spool_bench [--dir D] [--runs N] [--count N] [--count-c N] [--producers N]\n"
        "                   [--window N] [--size BYTES] [--k N] [--resident N] [--churn N]\n"
        "                   [--chunk BYTES|whole] [--only abcd] [--sizes B1,B2,...]\n"
        "smoke: spool_bench --runs 1 --count 500 --count-c 50 --resident 500 --churn 2000\n");
    std::exit(2);
}

Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (i + 1 >= argc) {
            usage();
        }
        const std::string v = argv[++i];
        auto num = [&] { return static_cast<std::size_t>(std::stoull(v)); };
        if (flag == "--dir") {
            a.dir = v;
        } else if (flag == "--runs") {
            a.runs = static_cast<int>(num());
        } else if (flag == "--count") {
            a.count = num();
        } else if (flag == "--count-c") {
            a.count_c = num();
        } else if (flag == "--producers") {
            a.producers = num();
        } else if (flag == "--window") {
            a.window = num();
        } else if (flag == "--size") {
            a.size = num();
        } else if (flag == "--k") {
            a.k = num();
        } else if (flag == "--resident") {
            a.resident = num();
        } else if (flag == "--churn") {
            a.churn = num();
        } else if (flag == "--chunk") {
            a.chunk = v == "whole" ? SIZE_MAX : num();
        } else if (flag == "--sizes") {
            for (std::size_t pos = 0; pos < v.size();) {
                const std::size_t comma = std::min(v.find(',', pos), v.size());
                a.sizes.push_back(
                    static_cast<std::size_t>(std::stoull(v.substr(pos, comma - pos))));
                pos = comma + 1;
            }
        } else if (flag == "--only") {
            a.only = v;
        } else {
            usage();
        }
    }
    if (a.runs < 1 || a.producers < 1 || a.window < 1 || a.k < 1) {
        usage();
    }
    return a;
}

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

void fresh_dir(const std::string& path) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
}

template <typename T> T must(Result<T> r, const char* what) {
    if (!r) {
        std::fprintf(stderr, "%s: %s\n", what, r.error().describe().c_str());
        std::exit(1);
    }
    return std::move(*r);
}

void must(const Status& s, const char* what) {
    if (!s) {
        std::fprintf(stderr, "%s: %s\n", what, s.error().describe().c_str());
        std::exit(1);
    }
}

// (a) LMDB alone: `count` puts of `size` bytes, a durable commit every k puts.
double raw_ceiling(const Args& a, const std::string& path) {
    fresh_dir(path);
    lmdb::EnvOptions eo;
    eo.path = path;
    eo.map_size = 64ULL << 30U;
    auto env = must(lmdb::Env::open(eo), "open raw env");
    auto dbi = must(env->table("raw", true), "open raw table");
    const std::string value(a.size, 'r');
    const auto start = Clock::now();
    for (std::size_t done = 0; done < a.count;) {
        auto txn = must(env->begin_write(), "begin");
        for (std::size_t i = 0; i < a.k && done < a.count; ++i, ++done) {
            must(txn.put(dbi, record::be64(done + 1), value), "put");
        }
        must(txn.commit(), "commit");
    }
    return static_cast<double>(a.count) / seconds_since(start);
}

std::atomic<std::size_t> g_message_number{0};

std::size_t pick_size(const Args& a) {
    if (a.sizes.empty()) {
        return a.size;
    }
    return a.sizes[g_message_number.fetch_add(1) % a.sizes.size()];
}

NewMessage message(Spool& s, std::size_t size) {
    NewMessage m;
    m.envelope.id = s.new_id();
    m.envelope.arrival_ms = SystemClock::instance().now_ms();
    m.envelope.mail_from = "bench@example.org";
    m.envelope.client_addr = "192.0.2.1";
    m.envelope.helo = "bench.example.org";
    Recipient r;
    r.address = "user@example.net";
    m.envelope.recipients.push_back(r);
    m.body.assign(size, 'm');
    return m;
}

// Lets each producer keep `window` enqueues in flight, as a thread serving many sessions.
class Window {
public:
    explicit Window(std::size_t n) : free_(n), size_(n) {}
    void acquire() {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return free_ > 0; });
        --free_;
    }
    void release() {
        {
            const std::lock_guard lock(mutex_);
            ++free_;
        }
        cv_.notify_all();
    }
    void drain() {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return free_ == size_; });
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::size_t free_;
    std::size_t size_;
};

std::unique_ptr<Spool> open_bench_spool(const Args& a, const std::string& path,
                                        std::size_t max_batch) {
    SpoolOptions o;
    o.path = path;
    o.max_size_bytes = 256ULL << 30U;
    o.max_batch = max_batch;
    o.body_chunk_bytes = a.chunk;
    return must(Spool::open(o), "open spool");
}

// (b)/(c): `count` enqueues from `producers` threads; returns messages/s.
double spool_enqueues(const Args& a, const std::string& path, std::size_t count,
                      std::size_t max_batch) {
    fresh_dir(path);
    auto spool = open_bench_spool(a, path, max_batch);
    std::atomic<std::size_t> next{0};
    std::atomic<std::size_t> failed{0};
    const auto start = Clock::now();
    std::vector<std::thread> threads;
    for (std::size_t p = 0; p < a.producers; ++p) {
        threads.emplace_back([&] {
            Window window(a.window);
            while (next.fetch_add(1) < count) {
                window.acquire();
                spool->enqueue(message(*spool, pick_size(a)), [&window, &failed](const Status& st) {
                    if (!st) {
                        ++failed;
                    }
                    window.release();
                });
            }
            window.drain();
        });
    }
    for (auto& t : threads) {
        t.join();
    }
    const double rate = static_cast<double>(count) / seconds_since(start);
    if (failed.load() != 0) {
        std::fprintf(stderr, "enqueue failures: %zu\n", failed.load());
        std::exit(1);
    }
    return rate;
}

struct ChurnResult {
    double start_rate = 0;
    double end_rate = 0;
    std::uint64_t file_bytes = 0;
    std::uint64_t live_bytes = 0;
    std::uint64_t used_bytes = 0;
};

// (d): fill to `resident`, then each step enqueues one message and removes the oldest.
ChurnResult churn(const Args& a, const std::string& path) {
    fresh_dir(path);
    auto spool = open_bench_spool(a, path, 4096);
    std::mutex ids_mutex;
    std::deque<QueueId> ids;
    std::atomic<std::size_t> failed{0};
    auto run = [&](std::size_t count, bool remove) {
        std::atomic<std::size_t> next{0};
        std::vector<std::thread> threads;
        for (std::size_t p = 0; p < a.producers; ++p) {
            threads.emplace_back([&] {
                Window window(a.window);
                auto done = [&window, &failed](const Status& st) {
                    if (!st) {
                        ++failed;
                    }
                    window.release();
                };
                while (next.fetch_add(1) < count) {
                    NewMessage m = message(*spool, pick_size(a));
                    std::optional<QueueId> victim;
                    {
                        const std::lock_guard lock(ids_mutex);
                        ids.push_back(m.envelope.id);
                        if (remove) {
                            victim = ids.front();
                            ids.pop_front();
                        }
                    }
                    window.acquire();
                    spool->enqueue(std::move(m), done);
                    if (victim) {
                        window.acquire();
                        spool->remove(*victim, done);
                    }
                }
                window.drain();
            });
        }
        for (auto& t : threads) {
            t.join();
        }
    };
    run(a.resident, false);
    // Rates over the first and last tenth of the churn, in enqueues/s.
    const std::size_t tenth = std::max<std::size_t>(1, a.churn / 10);
    ChurnResult r;
    auto t0 = Clock::now();
    run(tenth, true);
    r.start_rate = static_cast<double>(tenth) / seconds_since(t0);
    if (a.churn > 2 * tenth) {
        run(a.churn - 2 * tenth, true);
    }
    t0 = Clock::now();
    run(tenth, true);
    r.end_rate = static_cast<double>(tenth) / seconds_since(t0);
    if (failed.load() != 0) {
        std::fprintf(stderr, "churn failures: %zu\n", failed.load());
        std::exit(1);
    }
    auto c = must(spool->counters(), "counters");
    auto space = must(spool->space(), "space");
    r.live_bytes = c.total_bytes();
    r.used_bytes = space.used_bytes;
    r.file_bytes = std::filesystem::file_size(path + "/data.mdb");
    return r;
}

} // namespace

int main(int argc, char** argv) {
    const Args a = parse(argc, argv);
    log::set_level(std::getenv("SPOOL_BENCH_DEBUG") != nullptr ? log::Level::kDebug
                                                               : log::Level::kWarn);
    std::filesystem::create_directories(a.dir);
    const auto has = [&](char c) { return a.only.find(c) != std::string::npos; };
    fmt::print("spool_bench dir={} runs={} size={} producers={} window={} chunk={}\n", a.dir,
               a.runs, a.sizes.empty() ? std::to_string(a.size) : std::string("mixed"), a.producers,
               a.window,
               a.chunk == 0          ? std::string("auto")
               : a.chunk == SIZE_MAX ? std::string("whole")
                                     : std::to_string(a.chunk));
    std::vector<double> ra;
    std::vector<double> rb;
    std::vector<double> rc;
    for (int run = 0; run < a.runs; ++run) {
        if (has('a')) {
            ra.push_back(raw_ceiling(a, a.dir + "/raw"));
        }
        if (has('b')) {
            rb.push_back(spool_enqueues(a, a.dir + "/group", a.count, 4096));
        }
        if (has('c')) {
            rc.push_back(spool_enqueues(a, a.dir + "/single", a.count_c, 1));
        }
        fmt::print("run {}: a={:.0f} b={:.0f} c={:.0f} msgs/s\n", run + 1,
                   ra.empty() ? 0.0 : ra.back(), rb.empty() ? 0.0 : rb.back(),
                   rc.empty() ? 0.0 : rc.back());
        std::fflush(stdout);
    }
    double ma = 0;
    double mb = 0;
    double mc = 0;
    if (!ra.empty()) {
        ma = median(ra);
        fmt::print("(a) raw LMDB, {} B values, K={} per durable commit: {:.0f} msgs/s (median)\n",
                   a.size, a.k, ma);
    }
    if (!rb.empty()) {
        mb = median(rb);
        fmt::print("(b) spool group commit, {} producers: {:.0f} msgs/s (median)\n", a.producers,
                   mb);
    }
    if (!rc.empty()) {
        mc = median(rc);
        fmt::print("(c) spool, one commit per message: {:.0f} msgs/s (median)\n", mc);
    }
    if (ma > 0 && mb > 0) {
        fmt::print("    b/a = {:.2f} (target >= 0.70) {}\n", mb / ma,
                   mb / ma >= 0.7 ? "ok" : "MISSED");
    }
    if (mb > 0 && mc > 0) {
        fmt::print("    b/c = {:.1f}x (target >= 20x) {}\n", mb / mc,
                   mb / mc >= 20 ? "ok" : "MISSED");
    }
    if (has('d')) {
        std::fflush(stdout);
        const ChurnResult r = churn(a, a.dir + "/churn");
        const double rate_ratio = r.end_rate / r.start_rate;
        const double size_ratio = static_cast<double>(r.file_bytes) /
                                  static_cast<double>(std::max<std::uint64_t>(1, r.live_bytes));
        fmt::print(
            "(d) churn, {} resident, {} enqueue+remove: start {:.0f} msgs/s, end {:.0f} msgs/s\n",
            a.resident, a.churn, r.start_rate, r.end_rate);
        fmt::print("    end/start = {:.2f} (target >= 0.80) {}\n", rate_ratio,
                   rate_ratio >= 0.8 ? "ok" : "MISSED");
        fmt::print("    file {:.1f} MiB, pages used {:.1f} MiB, live body data {:.1f} MiB: "
                   "file/live = {:.2f} "
                   "(target <= 2.0) {}\n",
                   static_cast<double>(r.file_bytes) / 1048576.0,
                   static_cast<double>(r.used_bytes) / 1048576.0,
                   static_cast<double>(r.live_bytes) / 1048576.0, size_ratio,
                   size_ratio <= 2.0 ? "ok" : "MISSED");
    }
    std::filesystem::remove_all(a.dir);
    return 0;
}
