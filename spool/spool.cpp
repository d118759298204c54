#include "spool/spool.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <limits>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "common/log.hpp"
#include "common/metrics.hpp"
#include "spool/lmdb/lmdb.hpp"
#include "spool/record.hpp"

namespace spoold::spool {

bool is_final(RcptState s) {
    return s == RcptState::kDelivered || s == RcptState::kFailed || s == RcptState::kExpired;
}

std::string_view to_string(RcptState s) {
    switch (s) {
    case RcptState::kQueued: return "queued";
    case RcptState::kDeferred: return "deferred";
    case RcptState::kDelivered: return "delivered";
    case RcptState::kFailed: return "failed";
    case RcptState::kExpired: return "expired";
    }
    return "unknown";
}

std::string_view to_string(MsgState s) {
    switch (s) {
    case MsgState::kReady: return "ready";
    case MsgState::kDeferred: return "deferred";
    case MsgState::kHeld: return "held";
    }
    return "unknown";
}

MsgState message_state(const Envelope& env) {
    if (env.held) {
        return MsgState::kHeld;
    }
    const bool any_queued =
        std::any_of(env.recipients.begin(), env.recipients.end(),
                    [](const Recipient& r) { return r.state == RcptState::kQueued; });
    if (any_queued) {
        return MsgState::kReady;
    }
    const bool any_deferred =
        std::any_of(env.recipients.begin(), env.recipients.end(),
                    [](const Recipient& r) { return r.state == RcptState::kDeferred; });
    return any_deferred ? MsgState::kDeferred : MsgState::kReady;
}

UnixMillis next_due(const Envelope& env) {
    UnixMillis due = 0;
    for (const Recipient& r : env.recipients) {
        if (r.state == RcptState::kDeferred && (due == 0 || r.next_attempt_ms < due)) {
            due = r.next_attempt_ms;
        }
    }
    return due;
}

std::uint64_t Counters::total_messages() const {
    std::uint64_t n = 0;
    for (const auto& per_class : messages) {
        for (const auto v : per_class) {
            n += v;
        }
    }
    return n;
}

std::uint64_t Counters::total_bytes() const {
    std::uint64_t n = 0;
    for (const auto& per_class : bytes) {
        for (const auto v : per_class) {
            n += v;
        }
    }
    return n;
}

Status Spool::wait(const std::function<void(Done)>& submit) {
    auto promise = std::make_shared<std::promise<Status>>();
    auto future = promise->get_future();
    submit([promise](Status st) { promise->set_value(std::move(st)); });
    return future.get();
}

namespace {

using lmdb::WriteTxn;
using record::IndexFacts;

constexpr std::uint32_t kFormatVersion = 1;
constexpr std::string_view kFormatKey = "format_version";
constexpr std::string_view kBodyRefKey = "last_body_ref"; // big-endian u64
constexpr auto kGcPeriod = std::chrono::minutes(10);
constexpr std::size_t kPageHeaderSize = 16; // LMDB's PAGEHDRSZ on 64-bit builds
constexpr std::size_t kBodyKeySize = 12;    // id | chunk
constexpr std::uint64_t kMaxMapSize = std::numeric_limits<std::uint64_t>::max() / 2;

bool txn_may_be_dirty(const Error& e) {
    // Only LMDB failures can leave a half-applied op behind; every op checks its
    // preconditions (not found, invalid, id collision) before its first write.
    return e.kind == ErrorKind::kSpoolFull || e.kind == ErrorKind::kDiskFull ||
           e.kind == ErrorKind::kIo;
}

struct Tables {
    lmdb::Dbi msg, body, ready, deferred, expiry, counters, staging, meta, corrupt;
};

// The staging value: last append time | next chunk number | bytes staged | body ref.
struct StagingInfo {
    UnixMillis touched = 0;
    std::uint32_t next_chunk = 0;
    std::uint64_t bytes = 0;
    std::uint64_t body_ref = 0;
};
constexpr std::size_t kStagingValueSize = 8 + 4 + 8 + 8;

std::string encode_staging(const StagingInfo& s) {
    return record::be64(static_cast<std::uint64_t>(s.touched)) + record::be32(s.next_chunk) +
           record::be64(s.bytes) + record::be64(s.body_ref);
}

std::optional<StagingInfo> decode_staging(std::string_view v) {
    if (v.size() != kStagingValueSize) {
        return std::nullopt;
    }
    return StagingInfo{static_cast<UnixMillis>(record::read_be64(v)),
                       record::read_be32(v.substr(8)), record::read_be64(v.substr(12)),
                       record::read_be64(v.substr(20))};
}

// A stored message as the writer sees it: the envelope and where its body lives.
struct Stored {
    Envelope env;
    std::uint64_t body_ref = 0;
    IndexFacts facts() const { return record::facts_of(env, body_ref); }
};

struct Op {
    // Must be re-runnable: a batch is re-applied without a failed op, so apply never
    // consumes its captured inputs.
    std::function<Status(WriteTxn&)> apply;
    Done done;
    bool grows = false;    // needs new pages (enqueue, staging): failed with the rest on a full map
    std::size_t bytes = 0; // new data it writes, for the headroom estimate of growing ops
};

// Growing operations (new mail) stop short of a full map by this headroom, so deleting
// and recording outcomes, which need a few fresh pages themselves under copy-on-write,
// always fit: a map filled to the last page could otherwise never drain.
constexpr std::uint64_t kMinReservePages = 64;
constexpr std::uint64_t kReserveFraction = 32; // 1/32 of the map
constexpr std::uint64_t kPagesPerOp = 4;       // index and record pages an op may touch
constexpr std::uint64_t kPageSizeHint = 4080;  // body bytes per page (one chunk a page)

class LmdbSpool final : public Spool {
public:
    LmdbSpool(const SpoolOptions& options, std::unique_ptr<lmdb::Env> env, Tables tables,
              std::size_t chunk_bytes)
        : options_(options), clock_(*options.clock), env_(std::move(env)), t_(tables),
          chunk_bytes_(chunk_bytes), ids_(clock_) {}

    ~LmdbSpool() override {
        {
            const std::lock_guard lock(mutex_);
            stopping_ = true;
        }
        cv_.notify_all();
        if (writer_.joinable()) {
            writer_.join();
        }
    }

    LmdbSpool(const LmdbSpool&) = delete;
    LmdbSpool& operator=(const LmdbSpool&) = delete;

    Status start() {
        auto txn = env_->begin_read();
        if (!txn) {
            return tl::unexpected(txn.error());
        }
        // Resume without a scan: only the newest ids of msg and staging are read.
        for (const lmdb::Dbi dbi : {t_.msg, t_.staging}) {
            auto last = txn->last_key(dbi);
            if (!last) {
                return tl::unexpected(last.error());
            }
            if (*last && (*last)->size() >= 8) {
                ids_.raise_floor(QueueId{record::read_be64(**last)});
            }
        }

        if (!options_.read_only) {
            writer_ = std::thread([this] { writer_loop(); });
            gc_staged(clock_.now_ms() - kStagedOrphanAgeMs, [](const Status& st) {
                if (!st) {
                    log::warn("event=spool_gc_staged_failed error={}",
                              log::quote(st.error().describe()));
                }
            });
        }
        return {};
    }

    QueueId new_id() override { return ids_.next(); }

    void enqueue(NewMessage message, Done done) override {
        auto msg = std::make_shared<const NewMessage>(std::move(message));
        const std::size_t bytes = msg->body.size();
        submit(Op{[this, msg](WriteTxn& txn) { return insert_message(txn, *msg, false); },
                  std::move(done), true, bytes});
    }

    void append_staged(QueueId id, std::string chunk, Done done) override {
        auto data = std::make_shared<const std::string>(std::move(chunk));
        const std::size_t bytes = data->size();
        submit(Op{[this, id, data](WriteTxn& txn) { return apply_append_staged(txn, id, *data); },
                  std::move(done), true, bytes});
    }

    void enqueue_staged(NewMessage message, Done done) override {
        auto msg = std::make_shared<const NewMessage>(std::move(message));
        const std::size_t bytes = msg->body.size();
        submit(Op{[this, msg](WriteTxn& txn) { return insert_message(txn, *msg, true); },
                  std::move(done), true, bytes});
    }

    void discard_staged(QueueId id, Done done) override {
        submit(Op{[this, id](WriteTxn& txn) { return apply_discard_staged(txn, id); },
                  std::move(done), false});
    }

    void record_outcome(QueueId id, std::vector<RecipientUpdate> updates,
                        std::optional<NewMessage> dsn, Done done) override {
        auto ups = std::make_shared<const std::vector<RecipientUpdate>>(std::move(updates));
        auto d = std::make_shared<const std::optional<NewMessage>>(std::move(dsn));
        const bool grows = d->has_value();
        submit(Op{[this, id, ups, d](WriteTxn& txn) { return apply_outcome(txn, id, *ups, *d); },
                  std::move(done), grows});
    }

    void set_held(QueueId id, bool held, Done done) override {
        modify(id, std::move(done), [held](Envelope& env) -> Status {
            env.held = held;
            return {};
        });
    }

    void set_class(QueueId id, ClassId klass, Done done) override {
        if (klass >= kMaxClasses) {
            done(fail(ErrorKind::kInvalid, fmt::format("class {} out of range", klass)));
            return;
        }
        modify(id, std::move(done), [klass](Envelope& env) -> Status {
            env.klass = klass;
            return {};
        });
    }

    void flush(QueueId id, Done done) override {
        modify(id, std::move(done), [](Envelope& env) -> Status {
            for (Recipient& r : env.recipients) {
                if (r.state == RcptState::kDeferred) {
                    r.state = RcptState::kQueued;
                    r.next_attempt_ms = 0;
                }
            }
            return {};
        });
    }

    void hold_expired(QueueId id, Done done) override {
        modify(id, std::move(done), [](Envelope& env) -> Status {
            env.held = true;
            env.flags |= kFlagExpiredHold;
            return {};
        });
    }

    void remove(QueueId id, Done done) override {
        submit(Op{[this, id](WriteTxn& txn) -> Status {
                      auto env = load(txn, id);
                      if (!env) {
                          return tl::unexpected(env.error());
                      }
                      if (!*env) {
                          return fail(ErrorKind::kNotFound,
                                      fmt::format("{}: no such message", id.text()));
                      }
                      return delete_message(txn, (*env)->facts());
                  },
                  std::move(done), false});
    }

    void promote_due(UnixMillis now, Done done) override {
        submit(Op{[this, now](WriteTxn& txn) { return apply_promote(txn, now); }, std::move(done),
                  false});
    }

    void put_meta(std::string key, std::string value, Done done) override {
        submit(Op{[this, key = std::move(key), value = std::move(value)](WriteTxn& txn) -> Status {
                      auto put = txn.put(t_.meta, key, value);
                      if (!put) {
                          return tl::unexpected(put.error());
                      }
                      return {};
                  },
                  std::move(done), false});
    }

    void gc_staged(UnixMillis older_than, Done done) override {
        submit(Op{[this, older_than](WriteTxn& txn) { return apply_gc_staged(txn, older_than); },
                  std::move(done), false});
    }

    // ---- reads ----

    Result<Counters> counters() override {
        auto txn = env_->begin_read();
        if (!txn) {
            return tl::unexpected(txn.error());
        }
        Counters c;
        auto st = txn->scan(t_.counters, {}, [&c](std::string_view k, std::string_view v) {
            if (k.size() == 2 && v.size() == 16) {
                const auto klass = static_cast<std::uint8_t>(k[0]);
                const auto state = static_cast<std::uint8_t>(k[1]);
                if (klass < kMaxClasses && state < kNumMsgStates) {
                    c.messages[klass][state] = record::read_be64(v);
                    c.bytes[klass][state] = record::read_be64(v.substr(8));
                }
            }
            return true;
        });
        if (!st) {
            return tl::unexpected(st.error());
        }
        return c;
    }

    Result<std::optional<Envelope>> get(QueueId id) override {
        auto txn = env_->begin_read();
        if (!txn) {
            return tl::unexpected(txn.error());
        }
        auto raw = txn->get(t_.msg, record::msg_key(id));
        if (!raw) {
            return tl::unexpected(raw.error());
        }
        if (!*raw) {
            return std::optional<Envelope>{};
        }
        auto env = record::decode_envelope(**raw);
        if (!env) {
            report_corrupt(id, env.error());
            return tl::unexpected(env.error());
        }
        return std::optional<Envelope>{std::move(*env)};
    }

    Result<BodyPiece> read_body(QueueId id, std::uint32_t from_chunk,
                                std::size_t max_bytes) override {
        auto txn = env_->begin_read();
        if (!txn) {
            return tl::unexpected(txn.error());
        }
        auto exists = txn->get(t_.msg, record::msg_key(id));
        if (!exists) {
            return tl::unexpected(exists.error());
        }
        if (!*exists) {
            return fail(ErrorKind::kNotFound, fmt::format("{}: no such message", id.text()));
        }
        auto facts = record::decode_facts(**exists);
        if (!facts) {
            report_corrupt(id, facts.error());
            return tl::unexpected(facts.error());
        }
        BodyPiece piece;
        piece.next_chunk = from_chunk;
        piece.done = true;
        const std::string prefix = record::be64(facts->body_ref);
        auto st =
            txn->scan(t_.body, record::body_key(facts->body_ref, from_chunk),
                      [&](std::string_view k, std::string_view v) {
                          if (k.size() != kBodyKeySize || k.substr(0, 8) != prefix) {
                              return false;
                          }
                          // At least one chunk per call, so a small max_bytes still makes progress.
                          if (!piece.data.empty() && piece.data.size() + v.size() > max_bytes) {
                              piece.done = false;
                              return false;
                          }
                          piece.data.append(v);
                          piece.next_chunk = record::read_be32(k.substr(8)) + 1;
                          return true;
                      });
        if (!st) {
            return tl::unexpected(st.error());
        }
        return piece;
    }

    Result<std::vector<QueueId>> ready_after(ClassId klass, QueueId after,
                                             std::size_t max) override {
        std::vector<QueueId> out;
        if (klass >= kMaxClasses || after.value == std::numeric_limits<std::uint64_t>::max()) {
            return out;
        }
        auto txn = env_->begin_read();
        if (!txn) {
            return tl::unexpected(txn.error());
        }
        auto st = txn->scan(t_.ready, record::ready_key(klass, QueueId{after.value + 1}),
                            [&](std::string_view k, std::string_view) {
                                if (out.size() >= max || k.size() != 9 ||
                                    static_cast<std::uint8_t>(k[0]) != klass) {
                                    return false;
                                }
                                out.push_back(record::id_at(k, 1));
                                return true;
                            });
        if (!st) {
            return tl::unexpected(st.error());
        }
        return out;
    }

    Result<std::vector<QueueId>> due(UnixMillis now, std::size_t max) override {
        return time_index(t_.deferred, now, max);
    }

    Result<std::vector<QueueId>> expired(UnixMillis now, std::size_t max) override {
        return time_index(t_.expiry, now, max);
    }

    Result<std::vector<Envelope>> envelopes_after(QueueId after, std::size_t max) override {
        std::vector<Envelope> out;
        if (after.value == std::numeric_limits<std::uint64_t>::max()) {
            return out;
        }
        auto txn = env_->begin_read();
        if (!txn) {
            return tl::unexpected(txn.error());
        }
        auto st = txn->scan(t_.msg, record::msg_key(QueueId{after.value + 1}),
                            [&](std::string_view k, std::string_view v) {
                                if (out.size() >= max) {
                                    return false;
                                }
                                auto env = record::decode_envelope(v);
                                if (!env) {
                                    // A listing goes on past a bad record; the record is
                                    // quarantined.
                                    report_corrupt(record::id_at(k, 0), env.error());
                                    return true;
                                }
                                out.push_back(std::move(*env));
                                return true;
                            });
        if (!st) {
            return tl::unexpected(st.error());
        }
        return out;
    }

    Result<std::optional<QueueId>> oldest() override {
        auto txn = env_->begin_read();
        if (!txn) {
            return tl::unexpected(txn.error());
        }
        std::optional<QueueId> out;
        auto st = txn->scan(t_.msg, {}, [&](std::string_view k, std::string_view) {
            if (k.size() == 8) {
                out = record::id_at(k, 0);
            }
            return false;
        });
        if (!st) {
            return tl::unexpected(st.error());
        }
        return out;
    }

    Result<std::optional<std::string>> get_meta(std::string_view key) override {
        auto txn = env_->begin_read();
        if (!txn) {
            return tl::unexpected(txn.error());
        }
        auto v = txn->get(t_.meta, key);
        if (!v) {
            return tl::unexpected(v.error());
        }
        if (!*v) {
            return std::optional<std::string>{};
        }
        return std::optional<std::string>{std::string(**v)};
    }

    // Pages the B-trees hold in this transaction's view (the freelist's own included).
    Result<std::uint64_t> used_pages(const lmdb::Txn& txn) const {
        constexpr unsigned int kFreeDbi = 0;
        constexpr unsigned int kMainDbi = 1;
        constexpr std::uint64_t kMetaPages = 2;
        std::uint64_t used = kMetaPages;
        for (const lmdb::Dbi dbi :
             {t_.msg, t_.body, t_.ready, t_.deferred, t_.expiry, t_.counters, t_.staging, t_.meta,
              t_.corrupt, lmdb::Dbi{kFreeDbi}, lmdb::Dbi{kMainDbi}}) {
            auto st = txn.stat(dbi);
            if (!st) {
                return tl::unexpected(st.error());
            }
            used += st->branch_pages + st->leaf_pages + st->overflow_pages;
        }
        return used;
    }

    // LMDB reports a short pwrite() during commit as EIO, so a filesystem that filled up
    // shows as an I/O error. When the disk is (nearly) full, say so: the client then hears
    // 452 4.3.1 (insufficient storage) rather than 451 4.3.0.
    Error disk_full_if_nearly_full(Error error) const {
        constexpr std::uintmax_t kNearlyFullBytes = 16ULL << 20U;
        if (error.kind != ErrorKind::kIo) {
            return error;
        }
        std::error_code ec;
        const auto fs = std::filesystem::space(options_.path, ec);
        if (!ec && fs.available < kNearlyFullBytes) {
            error.kind = ErrorKind::kDiskFull;
            error.message += " (filesystem full)";
        }
        return error;
    }

    Result<SpaceInfo> space() override {
        auto info = env_->info();
        if (!info) {
            return tl::unexpected(info.error());
        }
        // The data file never shrinks and its last page only grows, so neither says how
        // full the spool is: count the pages the B-trees hold now (the freelist's own
        // pages included). Pages freed by deliveries are reused before the file grows, so
        // they count as free space for the disk watermark too.
        auto txn = env_->begin_read();
        if (!txn) {
            return tl::unexpected(txn.error());
        }
        auto counted = used_pages(*txn);
        if (!counted) {
            return tl::unexpected(counted.error());
        }
        const std::uint64_t used_pages = *counted;
        SpaceInfo s;
        s.map_size = info->map_size;
        const std::uint64_t file_pages = info->last_page + 1;
        s.used_bytes = std::min(used_pages, file_pages) * info->page_size;
        const std::uint64_t reusable =
            (file_pages - std::min(used_pages, file_pages)) * info->page_size;
        std::error_code ec;
        const auto fs = std::filesystem::space(options_.path, ec);
        if (!ec) {
            s.fs_free_bytes = fs.available + reusable;
        }
        return s;
    }

    Result<std::vector<QueueId>> quarantined(std::size_t max) override {
        auto txn = env_->begin_read();
        if (!txn) {
            return tl::unexpected(txn.error());
        }
        std::vector<QueueId> out;
        auto st = txn->scan(t_.corrupt, {}, [&](std::string_view k, std::string_view) {
            if (out.size() >= max) {
                return false;
            }
            if (k.size() == 8) {
                out.push_back(record::id_at(k, 0));
            }
            return true;
        });
        if (!st) {
            return tl::unexpected(st.error());
        }
        return out;
    }

    Result<CheckReport> check(bool bodies, bool repair) override {
        CheckReport report;
        {
            auto txn = env_->begin_read();
            if (!txn) {
                return tl::unexpected(txn.error());
            }
            if (auto st = check_in(*txn, bodies, report); !st) {
                return tl::unexpected(st.error());
            }
        }
        if (repair) {
            if (options_.read_only) {
                return fail(ErrorKind::kInvalid, "repair needs a writable spool");
            }
            auto st = wait([this](Done d) {
                submit(
                    Op{[this](WriteTxn& txn) { return apply_rebuild(txn); }, std::move(d), true});
            });
            if (!st) {
                return tl::unexpected(st.error());
            }
            report.repaired = true;
        }
        return report;
    }

private:
    static void problem(CheckReport& r, std::string line) {
        if (r.problems.size() < kMaxCheckProblems) {
            r.problems.push_back(std::move(line));
        } else {
            ++r.more_problems;
        }
    }

    Status check_in(const lmdb::ReadTxn& txn, bool bodies, CheckReport& report) {
        Status inner;
        auto has = [&](lmdb::Dbi dbi, const std::string& key) {
            auto v = txn.get(dbi, key);
            if (!v) {
                inner = tl::unexpected(v.error());
                return false;
            }
            return v->has_value();
        };
        // Records: each in exactly the indexes its facts call for, bodies add up.
        auto st = txn.scan(t_.msg, {}, [&](std::string_view k, std::string_view v) {
            ++report.records;
            const QueueId id = k.size() == 8 ? record::id_at(k, 0) : QueueId{0};
            auto env = record::decode_envelope(v);
            if (!env) {
                problem(report, fmt::format("record {}: {}", id.text(), env.error().message));
                return true;
            }
            const IndexFacts f = *record::decode_facts(v);
            const auto si = static_cast<std::size_t>(f.state);
            report.scanned.messages[f.klass][si] += 1;
            report.scanned.bytes[f.klass][si] += f.size;
            const bool in_ready = has(t_.ready, record::ready_key(f.klass, id));
            const bool in_deferred =
                f.state == MsgState::kDeferred && has(t_.deferred, record::time_key(f.due, id));
            const bool in_expiry = f.in_expiry && has(t_.expiry, record::time_key(f.expires, id));
            if ((f.state == MsgState::kReady) != in_ready) {
                problem(report,
                        fmt::format("record {}: {} but {} the ready index of class {}", id.text(),
                                    to_string(f.state), in_ready ? "in" : "not in", f.klass));
            }
            if (f.state == MsgState::kDeferred && !in_deferred) {
                problem(report,
                        fmt::format("record {}: deferred at {} but not in the deferred index",
                                    id.text(), f.due));
            }
            if (f.in_expiry && !in_expiry) {
                problem(report, fmt::format("record {}: expires at {} but not in the expiry index",
                                            id.text(), f.expires));
            }
            if (bodies) {
                std::uint64_t stored = 0;
                const std::string prefix = record::be64(f.body_ref);
                auto b = txn.scan(t_.body, record::body_key(f.body_ref, 0),
                                  [&](std::string_view bk, std::string_view bv) {
                                      if (bk.size() != kBodyKeySize || bk.substr(0, 8) != prefix) {
                                          return false;
                                      }
                                      stored += bv.size();
                                      return true;
                                  });
                if (!b) {
                    inner = b;
                    return false;
                }
                if (stored != f.size) {
                    problem(report, fmt::format("body {}: chunks hold {} bytes, envelope says {}",
                                                id.text(), stored, f.size));
                }
            }
            return static_cast<bool>(inner);
        });
        if (!st) {
            return st;
        }
        if (!inner) {
            return inner;
        }
        // Index entries: each points at a record whose facts match the key.
        auto facts_for = [&](QueueId id) -> std::optional<IndexFacts> {
            auto v = txn.get(t_.msg, record::msg_key(id));
            if (!v) {
                inner = tl::unexpected(v.error());
                return std::nullopt;
            }
            if (!*v) {
                return std::nullopt;
            }
            auto f = record::decode_facts(**v);
            return f ? std::optional<IndexFacts>{*f} : std::nullopt;
        };
        st = txn.scan(t_.ready, {}, [&](std::string_view k, std::string_view) {
            ++report.index_entries;
            if (k.size() != 9) {
                problem(report, "ready index: malformed key");
                return true;
            }
            const QueueId id = record::id_at(k, 1);
            const auto klass = static_cast<ClassId>(k[0]);
            const auto f = facts_for(id);
            if (!f) {
                problem(report,
                        fmt::format("ready index: class {} id {} has no record", klass, id.text()));
            } else if (f->klass != klass || f->state != MsgState::kReady) {
                problem(report,
                        fmt::format("ready index: class {} id {} but the record is {} in class {}",
                                    klass, id.text(), to_string(f->state), f->klass));
            }
            return static_cast<bool>(inner);
        });
        if (!st || !inner) {
            return !st ? st : inner;
        }
        for (const bool deferred : {true, false}) {
            const char* name = deferred ? "deferred" : "expiry";
            st = txn.scan(
                deferred ? t_.deferred : t_.expiry, {}, [&](std::string_view k, std::string_view) {
                    ++report.index_entries;
                    if (k.size() != 16) {
                        problem(report, fmt::format("{} index: malformed key", name));
                        return true;
                    }
                    const auto at = static_cast<UnixMillis>(record::read_be64(k));
                    const QueueId id = record::id_at(k, 8);
                    const auto f = facts_for(id);
                    if (!f) {
                        problem(report, fmt::format("{} index: id {} at {} has no record", name,
                                                    id.text(), at));
                    } else if (deferred ? (f->state != MsgState::kDeferred || f->due != at)
                                        : (!f->in_expiry || f->expires != at)) {
                        problem(report,
                                fmt::format("{} index: id {} at {} disagrees with its record", name,
                                            id.text(), at));
                    }
                    return static_cast<bool>(inner);
                });
            if (!st || !inner) {
                return !st ? st : inner;
            }
        }
        // Counters.
        Counters stored;
        st = txn.scan(t_.counters, {}, [&](std::string_view k, std::string_view v) {
            if (k.size() == 2 && v.size() == 16 && static_cast<std::uint8_t>(k[0]) < kMaxClasses &&
                static_cast<std::uint8_t>(k[1]) < kNumMsgStates) {
                stored.messages[static_cast<std::uint8_t>(k[0])][static_cast<std::uint8_t>(k[1])] =
                    record::read_be64(v);
                stored.bytes[static_cast<std::uint8_t>(k[0])][static_cast<std::uint8_t>(k[1])] =
                    record::read_be64(v.substr(8));
            } else {
                problem(report, "counters: malformed entry");
            }
            return true;
        });
        if (!st) {
            return st;
        }
        for (std::size_t c = 0; c < kMaxClasses; ++c) {
            for (std::size_t s = 0; s < kNumMsgStates; ++s) {
                if (stored.messages[c][s] != report.scanned.messages[c][s] ||
                    stored.bytes[c][s] != report.scanned.bytes[c][s]) {
                    problem(report,
                            fmt::format("counters: class {} {} stores {} messages / {} bytes, scan "
                                        "counts {} / {}",
                                        c, to_string(static_cast<MsgState>(s)),
                                        stored.messages[c][s], stored.bytes[c][s],
                                        report.scanned.messages[c][s], report.scanned.bytes[c][s]));
                }
            }
        }
        return {};
    }

    // Rebuilds indexes and counters from the records; undecodable records are quarantined.
    Status apply_rebuild(WriteTxn& txn) {
        for (const lmdb::Dbi dbi : {t_.ready, t_.deferred, t_.expiry, t_.counters}) {
            if (auto st = txn.clear(dbi); !st) {
                return st;
            }
        }
        std::vector<std::pair<QueueId, Error>> bad;
        std::vector<IndexFacts> good;
        constexpr std::size_t kStep = 10'000; // bounded memory: collect, apply, continue
        std::string from;
        for (;;) {
            good.clear();
            bad.clear();
            std::string last;
            auto st = txn.scan(t_.msg, from, [&](std::string_view k, std::string_view v) {
                if (good.size() + bad.size() >= kStep) {
                    return false;
                }
                last = std::string(k);
                const QueueId id = k.size() == 8 ? record::id_at(k, 0) : QueueId{0};
                auto env = record::decode_envelope(v);
                if (!env) {
                    bad.emplace_back(id, env.error());
                } else {
                    good.push_back(*record::decode_facts(v));
                }
                return true;
            });
            if (!st) {
                return st;
            }
            for (const IndexFacts& f : good) {
                if (auto a = index_add(txn, f); !a) {
                    return a;
                }
            }
            for (const auto& [id, why] : bad) {
                // The indexes were cleared, so the record is only moved, not un-indexed.
                auto raw = txn.get(t_.msg, record::msg_key(id));
                if (!raw) {
                    return tl::unexpected(raw.error());
                }
                if (*raw) {
                    const std::string copy(**raw);
                    if (auto r = txn.put(t_.corrupt, record::msg_key(id), copy); !r) {
                        return tl::unexpected(r.error());
                    }
                    if (auto r = txn.del(t_.msg, record::msg_key(id)); !r) {
                        return tl::unexpected(r.error());
                    }
                    log::error("event=spool_quarantine id={} reason={} indexes=rebuilt", id.text(),
                               log::quote(why.message));
                }
            }
            if (good.size() + bad.size() < kStep || last.empty()) {
                break;
            }
            // Continue strictly after the last key seen (quarantined ones are gone anyway).
            from = record::msg_key(QueueId{record::read_be64(last) + 1});
        }
        log::info("event=spool_rebuild done=1");
        return {};
    }

    // ---- writer thread ----

    void submit(Op op) {
        {
            const std::lock_guard lock(mutex_);
            if (!stopping_ && writer_.joinable()) {
                queue_.push_back(std::move(op));
                cv_.notify_one();
                return;
            }
        }
        op.done(fail(options_.read_only ? ErrorKind::kInvalid : ErrorKind::kShutdown,
                     options_.read_only ? "spool opened read-only" : "spool is stopping"));
    }

    void writer_loop() {
        auto last_gc = std::chrono::steady_clock::now();
        std::vector<Op> batch;
        for (;;) {
            {
                std::unique_lock lock(mutex_);
                cv_.wait_for(lock, kGcPeriod, [this] { return stopping_ || !queue_.empty(); });
                if (queue_.empty() && stopping_) {
                    return;
                }
                const std::size_t n =
                    std::min(queue_.size(), std::max<std::size_t>(1, options_.max_batch));
                for (std::size_t i = 0; i < n; ++i) {
                    batch.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                }
            }
            if (std::chrono::steady_clock::now() - last_gc >= kGcPeriod) {
                last_gc = std::chrono::steady_clock::now();
                const UnixMillis cutoff = clock_.now_ms() - kStagedOrphanAgeMs;
                batch.push_back(
                    Op{[this, cutoff](WriteTxn& txn) { return apply_gc_staged(txn, cutoff); },
                       [](const Status& st) {
                           if (!st) {
                               log::warn("event=spool_gc_staged_failed error={}",
                                         log::quote(st.error().describe()));
                           }
                       },
                       false});
            }
            if (batch.empty()) {
                continue;
            }
            const auto started = std::chrono::steady_clock::now();
            std::vector<Status> results = run_batch(batch);
            const auto took_us = std::chrono::duration_cast<std::chrono::microseconds>(
                                     std::chrono::steady_clock::now() - started)
                                     .count();
            log::debug("event=spool_batch ops={} us={}", batch.size(), took_us);
            batch_size_metric_.observe(static_cast<double>(batch.size()));
            commit_seconds_metric_.observe(static_cast<double>(took_us) / 1e6);
            for (std::size_t i = 0; i < batch.size(); ++i) {
                if (batch[i].done) {
                    batch[i].done(std::move(results[i]));
                }
            }
            batch.clear();
        }
    }

    // Applies the ops in one transaction and commits once. An op whose LMDB work fails
    // is taken out and the batch re-run without it, so one full map or bad op does not
    // fail the others.
    std::vector<Status> run_batch(std::vector<Op>& batch) {
        std::vector<Status> results(batch.size());
        std::vector<bool> failed(batch.size(), false);
        for (;;) {
            auto txn = env_->begin_write();
            if (!txn) {
                for (std::size_t i = 0; i < batch.size(); ++i) {
                    if (!failed[i]) {
                        results[i] = tl::unexpected(txn.error());
                    }
                }
                return results;
            }
            // Headroom for growing ops: what is free now minus the reserve, spent by each
            // growing op's estimate; past it new mail is refused (spool full) while
            // deletes and outcomes in the same batch still go through.
            std::uint64_t budget = std::numeric_limits<std::uint64_t>::max();
            if (const auto info = env_->info(); info && info->page_size > 0) {
                const std::uint64_t map_pages = info->map_size / info->page_size;
                const std::uint64_t reserve =
                    std::max(kMinReservePages, map_pages / kReserveFraction);
                if (const auto used = used_pages(*txn); used) {
                    budget = map_pages > *used + reserve ? map_pages - *used - reserve : 0;
                }
            }
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
                if (st || !txn_may_be_dirty(st.error())) {
                    results[i] = std::move(st);
                    continue;
                }
                failed[i] = true;
                const bool full = st.error().kind == ErrorKind::kSpoolFull ||
                                  st.error().kind == ErrorKind::kDiskFull;
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
                committed = tl::unexpected(disk_full_if_nearly_full(committed.error()));
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

    // ---- write helpers: each runs inside the writer's transaction ----

    static Status as_status(const Result<bool>& r) {
        if (!r) {
            return tl::unexpected(r.error());
        }
        return {};
    }

    Status counter_add(WriteTxn& txn, ClassId klass, MsgState state, std::int64_t dmsg,
                       std::int64_t dbytes) {
        const std::string key = record::counter_key(klass, state);
        auto cur = txn.get(t_.counters, key);
        if (!cur) {
            return tl::unexpected(cur.error());
        }
        std::uint64_t msgs = 0;
        std::uint64_t bytes = 0;
        if (*cur && (*cur)->size() == 16) {
            msgs = record::read_be64(**cur);
            bytes = record::read_be64((*cur)->substr(8));
        }
        msgs += static_cast<std::uint64_t>(dmsg);
        bytes += static_cast<std::uint64_t>(dbytes);
        return as_status(txn.put(t_.counters, key, record::be64(msgs) + record::be64(bytes)));
    }

    Status index_add(WriteTxn& txn, const IndexFacts& f) {
        if (f.state == MsgState::kReady) {
            if (auto r = txn.put(t_.ready, record::ready_key(f.klass, f.id), {}); !r) {
                return tl::unexpected(r.error());
            }
        } else if (f.state == MsgState::kDeferred) {
            if (auto r = txn.put(t_.deferred, record::time_key(f.due, f.id), {}); !r) {
                return tl::unexpected(r.error());
            }
        }
        if (f.in_expiry) {
            if (auto r = txn.put(t_.expiry, record::time_key(f.expires, f.id), {}); !r) {
                return tl::unexpected(r.error());
            }
        }
        return counter_add(txn, f.klass, f.state, 1, static_cast<std::int64_t>(f.size));
    }

    Status index_remove(WriteTxn& txn, const IndexFacts& f) {
        if (f.state == MsgState::kReady) {
            if (auto r = txn.del(t_.ready, record::ready_key(f.klass, f.id)); !r) {
                return tl::unexpected(r.error());
            }
        } else if (f.state == MsgState::kDeferred) {
            if (auto r = txn.del(t_.deferred, record::time_key(f.due, f.id)); !r) {
                return tl::unexpected(r.error());
            }
        }
        if (f.in_expiry) {
            if (auto r = txn.del(t_.expiry, record::time_key(f.expires, f.id)); !r) {
                return tl::unexpected(r.error());
            }
        }
        return counter_add(txn, f.klass, f.state, -1, -static_cast<std::int64_t>(f.size));
    }

    // Moves an undecodable record to `corrupt` and out of the indexes (exactly, when its
    // fixed header is intact). Returns the kCorrupt error for the caller on success.
    Status quarantine(WriteTxn& txn, QueueId id, std::string_view raw, const Error& why) {
        const std::string copy(raw); // raw points into the map; the puts below may move pages
        auto facts = record::decode_facts(copy);
        if (facts && facts->id == id) {
            if (auto st = index_remove(txn, *facts); !st) {
                return st;
            }
        }
        if (auto r = txn.put(t_.corrupt, record::msg_key(id), copy); !r) {
            return tl::unexpected(r.error());
        }
        if (auto r = txn.del(t_.msg, record::msg_key(id)); !r) {
            return tl::unexpected(r.error());
        }
        log::error("event=spool_quarantine id={} reason={} indexes={}", id.text(),
                   log::quote(why.message), facts ? "removed" : "unknown");
        return tl::unexpected(why);
    }

    // Empty optional when absent; a corrupt record is quarantined and reported as kCorrupt.
    Result<std::optional<Stored>> load(WriteTxn& txn, QueueId id) {
        auto raw = txn.get(t_.msg, record::msg_key(id));
        if (!raw) {
            return tl::unexpected(raw.error());
        }
        if (!*raw) {
            return std::optional<Stored>{};
        }
        auto env = record::decode_envelope(**raw);
        if (!env) {
            return tl::unexpected(quarantine(txn, id, **raw, env.error()).error());
        }
        const std::uint64_t ref = record::decode_facts(**raw)->body_ref;
        return std::optional<Stored>{Stored{std::move(*env), ref}};
    }

    // Rewrites a message whose indexes were derived from `old_facts` (same body).
    Status store(WriteTxn& txn, const IndexFacts& old_facts, const Envelope& env) {
        if (auto st = index_remove(txn, old_facts); !st) {
            return st;
        }
        if (auto r = txn.put(t_.msg, record::msg_key(env.id),
                             record::encode_envelope(env, old_facts.body_ref));
            !r) {
            return tl::unexpected(r.error());
        }
        return index_add(txn, record::facts_of(env, old_facts.body_ref));
    }

    Status delete_body(WriteTxn& txn, std::uint64_t body_ref) {
        std::vector<std::string> keys;
        const std::string prefix = record::be64(body_ref);
        auto st = txn.scan(t_.body, record::body_key(body_ref, 0),
                           [&](std::string_view k, std::string_view) {
                               if (k.size() != kBodyKeySize || k.substr(0, 8) != prefix) {
                                   return false;
                               }
                               keys.emplace_back(k);
                               return true;
                           });
        if (!st) {
            return st;
        }
        for (const std::string& k : keys) {
            if (auto r = txn.del(t_.body, k); !r) {
                return tl::unexpected(r.error());
            }
        }
        return {};
    }

    Status delete_message(WriteTxn& txn, const IndexFacts& f) {
        if (auto st = index_remove(txn, f); !st) {
            return st;
        }
        if (auto r = txn.del(t_.msg, record::msg_key(f.id)); !r) {
            return tl::unexpected(r.error());
        }
        return delete_body(txn, f.body_ref);
    }

    // The next body ref, from a counter in `meta` updated in the same txn: another process
    // (spoolctl) writing the same spool sees it, and an aborted batch leaves no trace.
    Result<std::uint64_t> alloc_body_ref(WriteTxn& txn) {
        auto cur = txn.get(t_.meta, kBodyRefKey);
        if (!cur) {
            return tl::unexpected(cur.error());
        }
        std::uint64_t last = 0;
        if (*cur && (*cur)->size() == 8) {
            last = record::read_be64(**cur);
        } else {
            // A spool without the counter: continue after the newest body chunk.
            auto key = txn.last_key(t_.body);
            if (!key) {
                return tl::unexpected(key.error());
            }
            if (*key && (*key)->size() >= 8) {
                last = record::read_be64(**key);
            }
        }
        if (auto r = txn.put(t_.meta, kBodyRefKey, record::be64(last + 1)); !r) {
            return tl::unexpected(r.error());
        }
        return last + 1;
    }

    // Writes `data` as chunks numbered from `first`; returns the next chunk number.
    Result<std::uint32_t> put_body(WriteTxn& txn, std::uint64_t body_ref, std::uint32_t first,
                                   std::string_view data) {
        std::uint32_t chunk = first;
        for (std::size_t pos = 0; pos < data.size(); pos += chunk_bytes_) {
            const std::size_t n = std::min(chunk_bytes_, data.size() - pos);
            if (auto r = txn.put(t_.body, record::body_key(body_ref, chunk), data.substr(pos, n));
                !r) {
                return tl::unexpected(r.error());
            }
            ++chunk;
        }
        return chunk;
    }

    static Status validate_new(const Envelope& env) {
        if (env.id.value == 0) {
            return fail(ErrorKind::kInvalid, "message without an id");
        }
        if (env.klass >= kMaxClasses) {
            return fail(ErrorKind::kInvalid,
                        fmt::format("{}: class {} out of range", env.id.text(), env.klass));
        }
        if (env.recipients.empty()) {
            return fail(ErrorKind::kInvalid, fmt::format("{}: no recipients", env.id.text()));
        }
        return {};
    }

    // Stores a complete new message. The envelope's size becomes the bytes actually stored,
    // so the byte counters always equal a scan. Nothing is written when the id exists.
    Status insert_message(WriteTxn& txn, const NewMessage& msg, bool staged) {
        if (auto st = validate_new(msg.envelope); !st) {
            return st;
        }
        const QueueId id = msg.envelope.id;
        StagingInfo staging;
        if (staged) {
            auto raw = txn.get(t_.staging, record::msg_key(id));
            if (!raw) {
                return tl::unexpected(raw.error());
            }
            if (!*raw) {
                return fail(ErrorKind::kNotFound,
                            fmt::format("{}: nothing staged (discarded or collected as an orphan)",
                                        id.text()));
            }
            auto info = decode_staging(**raw);
            if (!info) {
                return fail(ErrorKind::kCorrupt, fmt::format("{}: bad staging record", id.text()));
            }
            staging = *info;
        }
        std::uint64_t ref = staging.body_ref;
        if (!staged) {
            auto fresh = alloc_body_ref(txn);
            if (!fresh) {
                return tl::unexpected(fresh.error());
            }
            ref = *fresh;
        }
        Envelope env = msg.envelope;
        env.size = staging.bytes + msg.body.size();
        auto inserted = txn.put(t_.msg, record::msg_key(id), record::encode_envelope(env, ref),
                                WriteTxn::PutMode::kNoOverwrite);
        if (!inserted) {
            return tl::unexpected(inserted.error());
        }
        if (!*inserted) {
            return fail(ErrorKind::kInternal,
                        fmt::format("{}: queue id already in the spool", id.text()));
        }
        if (auto next = put_body(txn, ref, staging.next_chunk, msg.body); !next) {
            return tl::unexpected(next.error());
        }
        if (staged) {
            if (auto r = txn.del(t_.staging, record::msg_key(id)); !r) {
                return tl::unexpected(r.error());
            }
        }
        return index_add(txn, record::facts_of(env, ref));
    }

    Status apply_append_staged(WriteTxn& txn, QueueId id, std::string_view data) {
        if (id.value == 0) {
            return fail(ErrorKind::kInvalid, "staging without an id");
        }
        auto exists = txn.get(t_.msg, record::msg_key(id));
        if (!exists) {
            return tl::unexpected(exists.error());
        }
        if (*exists) {
            return fail(ErrorKind::kInternal,
                        fmt::format("{}: staging for an id already in the spool", id.text()));
        }
        auto raw = txn.get(t_.staging, record::msg_key(id));
        if (!raw) {
            return tl::unexpected(raw.error());
        }
        StagingInfo info;
        if (*raw) {
            auto decoded = decode_staging(**raw);
            if (!decoded) {
                return fail(ErrorKind::kCorrupt, fmt::format("{}: bad staging record", id.text()));
            }
            info = *decoded;
        } else {
            auto fresh = alloc_body_ref(txn);
            if (!fresh) {
                return tl::unexpected(fresh.error());
            }
            info.body_ref = *fresh;
        }
        auto next = put_body(txn, info.body_ref, info.next_chunk, data);
        if (!next) {
            return tl::unexpected(next.error());
        }
        info.next_chunk = *next;
        info.bytes += data.size();
        info.touched = clock_.now_ms();
        return as_status(txn.put(t_.staging, record::msg_key(id), encode_staging(info)));
    }

    Status apply_discard_staged(WriteTxn& txn, QueueId id) {
        auto raw = txn.get(t_.staging, record::msg_key(id));
        if (!raw) {
            return tl::unexpected(raw.error());
        }
        if (!*raw) {
            return {}; // discarding twice, or after collection, is not an error
        }
        const auto info = decode_staging(**raw);
        if (auto r = txn.del(t_.staging, record::msg_key(id)); !r) {
            return tl::unexpected(r.error());
        }
        return info ? delete_body(txn, info->body_ref) : Status{};
    }

    Status apply_gc_staged(WriteTxn& txn, UnixMillis older_than) {
        std::vector<QueueId> orphans;
        auto st = txn.scan(t_.staging, {}, [&](std::string_view k, std::string_view v) {
            const auto info = decode_staging(v);
            if (k.size() == 8 && (!info || info->touched < older_than)) {
                orphans.push_back(record::id_at(k, 0));
            }
            return true;
        });
        if (!st) {
            return st;
        }
        for (const QueueId id : orphans) {
            if (auto d = apply_discard_staged(txn, id); !d) {
                return d;
            }
        }
        if (!orphans.empty()) {
            log::info("event=spool_gc_staged removed={}", orphans.size());
        }
        return {};
    }

    void modify(QueueId id, Done done, std::function<Status(Envelope&)> change) {
        submit(Op{[this, id, change = std::move(change)](WriteTxn& txn) -> Status {
                      auto env = load(txn, id);
                      if (!env) {
                          return tl::unexpected(env.error());
                      }
                      if (!*env) {
                          return fail(ErrorKind::kNotFound,
                                      fmt::format("{}: no such message", id.text()));
                      }
                      const IndexFacts old_facts = (*env)->facts();
                      Envelope updated = (*env)->env;
                      if (auto st = change(updated); !st) {
                          return st;
                      }
                      if (updated == (*env)->env) {
                          return {};
                      }
                      return store(txn, old_facts, updated);
                  },
                  std::move(done), false});
    }

    Status apply_outcome(WriteTxn& txn, QueueId id, const std::vector<RecipientUpdate>& updates,
                         const std::optional<NewMessage>& dsn) {
        auto env = load(txn, id);
        if (!env) {
            return tl::unexpected(env.error());
        }
        if (!*env) {
            return fail(ErrorKind::kNotFound, fmt::format("{}: no such message", id.text()));
        }
        Envelope updated = (*env)->env;
        for (const RecipientUpdate& u : updates) {
            if (u.index >= updated.recipients.size()) {
                return fail(ErrorKind::kInvalid,
                            fmt::format("{}: no recipient {}", id.text(), u.index));
            }
            Recipient& r = updated.recipients[u.index];
            r.state = u.state;
            r.next_attempt_ms = u.state == RcptState::kDeferred ? u.next_attempt_ms : 0;
            r.last_response = u.response;
            if (u.count_attempt) {
                ++r.attempts;
            }
        }
        if (dsn) {
            if (auto st = validate_new(dsn->envelope); !st) {
                return st;
            }
            auto exists = txn.get(t_.msg, record::msg_key(dsn->envelope.id));
            if (!exists) {
                return tl::unexpected(exists.error());
            }
            if (*exists) {
                return fail(ErrorKind::kInternal, fmt::format("{}: DSN id already in the spool",
                                                              dsn->envelope.id.text()));
            }
        }
        const IndexFacts old_facts = (*env)->facts();
        const bool all_final = std::all_of(updated.recipients.begin(), updated.recipients.end(),
                                           [](const Recipient& r) { return is_final(r.state); });
        Status st = all_final ? delete_message(txn, old_facts) : store(txn, old_facts, updated);
        if (!st) {
            return st;
        }
        if (dsn) {
            return insert_message(txn, *dsn, false);
        }
        return {};
    }

    Status apply_promote(WriteTxn& txn, UnixMillis now) {
        std::vector<std::pair<std::string, QueueId>> due_keys;
        auto st = txn.scan(t_.deferred, {}, [&](std::string_view k, std::string_view) {
            if (due_keys.size() >= kMaxPromotePerOp || k.size() != 16 ||
                static_cast<UnixMillis>(record::read_be64(k)) > now) {
                return false;
            }
            due_keys.emplace_back(std::string(k), record::id_at(k, 8));
            return true;
        });
        if (!st) {
            return st;
        }
        for (const auto& [key, id] : due_keys) {
            auto env = load(txn, id);
            if (!env) {
                if (txn_may_be_dirty(env.error())) {
                    return tl::unexpected(env.error());
                }
                continue; // quarantined; its index entries went with it
            }
            if (!*env) {
                // An index entry without its message: drop it rather than trip on it forever.
                if (auto r = txn.del(t_.deferred, key); !r) {
                    return tl::unexpected(r.error());
                }
                continue;
            }
            const IndexFacts old_facts = (*env)->facts();
            Envelope updated = (*env)->env;
            for (Recipient& r : updated.recipients) {
                if (r.state == RcptState::kDeferred && r.next_attempt_ms <= now) {
                    r.state = RcptState::kQueued;
                    r.next_attempt_ms = 0;
                }
            }
            if (auto s = store(txn, old_facts, updated); !s) {
                return s;
            }
        }
        return {};
    }

    // A corrupt record seen by a reader: quarantined by the writer (never from a read txn).
    void report_corrupt(QueueId id, const Error& why) {
        log::error("event=spool_corrupt_record id={} error={}", id.text(), log::quote(why.message));
        if (options_.read_only) {
            return;
        }
        submit(Op{[this, id](WriteTxn& txn) -> Status {
                      auto env = load(txn, id);
                      if (!env && txn_may_be_dirty(env.error())) {
                          return tl::unexpected(env.error());
                      }
                      return {};
                  },
                  Done{}, false});
    }

    Result<std::vector<QueueId>> time_index(lmdb::Dbi dbi, UnixMillis now, std::size_t max) {
        auto txn = env_->begin_read();
        if (!txn) {
            return tl::unexpected(txn.error());
        }
        std::vector<QueueId> out;
        auto st = txn->scan(dbi, {}, [&](std::string_view k, std::string_view) {
            if (out.size() >= max || k.size() != 16 ||
                static_cast<UnixMillis>(record::read_be64(k)) > now) {
                return false;
            }
            out.push_back(record::id_at(k, 8));
            return true;
        });
        if (!st) {
            return tl::unexpected(st.error());
        }
        return out;
    }

    SpoolOptions options_;
    const Clock& clock_;
    std::unique_ptr<lmdb::Env> env_;
    Tables t_;
    std::size_t chunk_bytes_;
    QueueIdGenerator ids_;

    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Op> queue_;
    bool stopping_ = false;
    std::thread writer_;
    metrics::Histogram& batch_size_metric_ = metrics::spoold_metrics().commit_batch_size;
    metrics::Histogram& commit_seconds_metric_ = metrics::spoold_metrics().commit_duration_seconds;
};

Status check_format(lmdb::Env& env, lmdb::Dbi meta) {
    const std::string current = std::to_string(kFormatVersion);
    {
        auto txn = env.begin_read();
        if (!txn) {
            return tl::unexpected(txn.error());
        }
        auto v = txn->get(meta, kFormatKey);
        if (!v) {
            return tl::unexpected(v.error());
        }
        if (*v) {
            const std::string found(**v);
            if (found != current) {
                // Only "1" exists today; anything else was written by a newer spoold.
                return fail(ErrorKind::kCorrupt,
                            fmt::format("{}: spool format {} is not {} (newer spoold?)", env.path(),
                                        found, current));
            }
            return {};
        }
    }
    if (env.read_only()) {
        return fail(ErrorKind::kIo, fmt::format("{}: not a spool (no format version)", env.path()));
    }
    auto txn = env.begin_write();
    if (!txn) {
        return tl::unexpected(txn.error());
    }
    if (auto r = txn->put(meta, kFormatKey, current); !r) {
        return tl::unexpected(r.error());
    }
    return txn->commit();
}

} // namespace

Result<std::unique_ptr<Spool>> Spool::open(const SpoolOptions& options) {
    if (options.clock == nullptr) {
        return fail(ErrorKind::kInvalid, "spool options without a clock");
    }
    lmdb::EnvOptions eo;
    eo.path = options.path;
    eo.map_size = std::min(options.max_size_bytes, kMaxMapSize);
    eo.read_only = options.read_only;
    eo.create = options.create;
    auto env = lmdb::Env::open(eo);
    if (!env) {
        return tl::unexpected(env.error());
    }
    const bool create = options.create && !options.read_only;
    Tables t;
    const std::pair<lmdb::Dbi*, const char*> names[] = {
        {&t.msg, "msg"},           {&t.body, "body"},     {&t.ready, "ready"},
        {&t.deferred, "deferred"}, {&t.expiry, "expiry"}, {&t.counters, "counters"},
        {&t.staging, "staging"},   {&t.meta, "meta"},     {&t.corrupt, "corrupt"},
    };
    for (const auto& [dbi, name] : names) {
        auto d = (*env)->table(name, create);
        if (!d) {
            return tl::unexpected(d.error());
        }
        *dbi = *d;
    }
    if (auto st = check_format(**env, t.meta); !st) {
        return tl::unexpected(st.error());
    }
    auto info = (*env)->info();
    if (!info) {
        return tl::unexpected(info.error());
    }
    std::size_t chunk = options.body_chunk_bytes;
    if (chunk == 0) {
        // Exactly one overflow page per chunk: pages are full whatever the key order, and
        // the freelist never has to find a contiguous run (ARCHITECTURE.md, "Spool layout").
        chunk = info->page_size - kPageHeaderSize;
    }
    auto spool = std::make_unique<LmdbSpool>(options, std::move(*env), t, chunk);
    if (auto st = spool->start(); !st) {
        return tl::unexpected(st.error());
    }
    log::info("event=spool_open path={} read_only={} chunk={}", log::quote(options.path),
              options.read_only, chunk);
    return std::unique_ptr<Spool>(std::move(spool));
}

} // namespace spoold::spool
