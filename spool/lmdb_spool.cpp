// LmdbSpool: the Spool on one LMDB environment, a facade that composes the parts. Writes
// become Ops for the group-commit Writer; reads are one short read transaction each.
#include <algorithm>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "common/address.hpp"
#include "common/assert.hpp"
#include "common/log.hpp"
#include "spool/bodies.hpp"
#include "spool/check.hpp"
#include "spool/indexes.hpp"
#include "spool/lmdb/lmdb.hpp"
#include "spool/record.hpp"
#include "spool/spool.hpp"
#include "spool/staging.hpp"
#include "spool/store.hpp"
#include "spool/tables.hpp"
#include "spool/upgrade.hpp"
#include "spool/writer.hpp"

namespace spoold::spool {
namespace {

using lmdb::WriteTxn;

constexpr auto kGcPeriod = std::chrono::minutes(10);
constexpr std::size_t kPageHeaderSize = 16; // LMDB's PAGEHDRSZ on 64-bit builds
constexpr std::uint64_t kMaxMapSize = std::numeric_limits<std::uint64_t>::max() / 2;

void log_gc_failure(const Status& st) {
    if (!st) {
        log::warn("event=spool_gc_staged_failed error={}", log::quote(st.error().describe()));
    }
}

std::vector<QueueId> ids_of(const std::vector<TimedId>& entries) {
    std::vector<QueueId> out;
    out.reserve(entries.size());
    for (const TimedId& e : entries) {
        out.push_back(e.id);
    }
    return out;
}

class LmdbSpool final : public Spool {
public:
    LmdbSpool(const SpoolOptions& options, std::unique_ptr<lmdb::Env> env, const Tables& tables,
              std::size_t chunk_bytes, std::uint32_t format)
        : options_(options), clock_(*options.clock), env_(std::move(env)), t_(tables),
          format_(format), indexes_(t_), bodies_(t_, chunk_bytes), store_(t_, indexes_, bodies_),
          staging_(t_, store_, bodies_, clock_), checker_(store_, indexes_, bodies_), ids_(clock_) {
    }

    // The writer's ops point into this object: it stops (after applying what is queued)
    // before any part goes away.
    ~LmdbSpool() override { writer_.reset(); }

    LmdbSpool(const LmdbSpool&) = delete;
    LmdbSpool& operator=(const LmdbSpool&) = delete;

    Status start() {
        if (format_ < kFormatVersion && !options_.read_only) {
            SPOOLD_CHECK(Upgrader(*env_, t_, store_, indexes_).run());
            format_ = kFormatVersion;
        }
        {
            // Resume without a scan: only the newest ids of msg and staging are read.
            SPOOLD_TRY(txn, env_->begin_read());
            SPOOLD_TRY(newest_msg, store_.newest(txn));
            SPOOLD_TRY(newest_staged, staging_.newest(txn));
            for (const auto& newest : {newest_msg, newest_staged}) {
                if (newest) {
                    ids_.raise_floor(*newest);
                }
            }
        }
        if (options_.read_only) {
            return {};
        }
        Writer::Options wo;
        wo.max_batch = options_.max_batch;
        wo.used_pages = [this](const lmdb::Txn& txn) { return used_pages(txn, t_); };
        wo.periodic = Writer::Periodic{
            kGcPeriod, [this] {
                const UnixMillis cutoff = clock_.now_ms() - kStagedOrphanAgeMs;
                return Op{[this, cutoff](WriteTxn& txn) { return staging_.collect(txn, cutoff); },
                          log_gc_failure, false};
            }};
        writer_ = std::make_unique<Writer>(*env_, std::move(wo));
        writer_->start();
        // Before open returns: nothing at open should race with the caller's first reads.
        log_gc_failure(wait(
            [this](Done d) { gc_staged(clock_.now_ms() - kStagedOrphanAgeMs, std::move(d)); }));
        return {};
    }

    QueueId new_id() override { return ids_.next(); }

    void on_arrival(ArrivalListener listener) override {
        const std::lock_guard lock(arrivals_mutex_);
        arrival_ = std::move(listener);
    }

    // ---- writes ----

    void enqueue(NewMessage message, Done done) override {
        auto msg = std::make_shared<const NewMessage>(std::move(message));
        const std::size_t bytes = msg->body.size();
        submit(Op{[this, msg](WriteTxn& txn) { return store_.insert(txn, *msg); },
                  arriving(msg->envelope.id, std::move(done)), true, bytes});
    }

    void append_staged(QueueId id, std::string chunk, Done done) override {
        auto data = std::make_shared<const std::string>(std::move(chunk));
        const std::size_t bytes = data->size();
        submit(Op{[this, id, data](WriteTxn& txn) { return staging_.append(txn, id, *data); },
                  std::move(done), true, bytes});
    }

    void enqueue_staged(NewMessage message, Done done) override {
        auto msg = std::make_shared<const NewMessage>(std::move(message));
        const std::size_t bytes = msg->body.size();
        submit(Op{[this, msg](WriteTxn& txn) { return staging_.enqueue(txn, *msg); },
                  arriving(msg->envelope.id, std::move(done)), true, bytes});
    }

    void discard_staged(QueueId id, Done done) override {
        submit(Op{[this, id](WriteTxn& txn) { return staging_.discard(txn, id); }, std::move(done),
                  false});
    }

    void gc_staged(UnixMillis older_than, Done done) override {
        submit(Op{[this, older_than](WriteTxn& txn) { return staging_.collect(txn, older_than); },
                  std::move(done), false});
    }

    void record_outcome(QueueId id, std::vector<RecipientUpdate> updates,
                        std::optional<NewMessage> dsn, Done done) override {
        auto ups = std::make_shared<const std::vector<RecipientUpdate>>(std::move(updates));
        auto d = std::make_shared<const std::optional<NewMessage>>(std::move(dsn));
        const bool grows = d->has_value();
        if (grows) {
            done = arriving((*d)->envelope.id, std::move(done));
        }
        submit(Op{
            [this, id, ups, d](WriteTxn& txn) { return store_.record_outcome(txn, id, *ups, *d); },
            std::move(done), grows});
    }

    void record_delay_warnings(std::vector<DelayWarning> items, BatchDone done) override {
        submit_batch(
            std::move(items), kMaxDelayWarningsPerOp, "delay warnings",
            [](const DelayWarning& w) { return w.dsn.body.size(); },
            [this](WriteTxn& txn, const DelayWarning& w) {
                return store_.record_delay_warning(txn, w.id, w.dsn);
            },
            [](const DelayWarning& w) { return std::optional<QueueId>(w.dsn.envelope.id); },
            std::move(done), false);
    }

    void set_held(QueueId id, bool held, Done done) override {
        modify(id, std::move(done), [held](Envelope& env) -> Status {
            env.held = held;
            if (!held) {
                env.hold_reason.clear();
            }
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
            queue_deferred(env);
            return {};
        });
    }

    void reclassify(QueueId id, Reclassification change, Done done) override {
        if (change.klass >= kMaxClasses) {
            done(fail(ErrorKind::kInvalid, fmt::format("class {} out of range", change.klass)));
            return;
        }
        modify(id, std::move(done), [change](Envelope& env) -> Status {
            env.klass = change.klass;
            env.expires_ms = change.expires_ms;
            const bool lives_on = change.expires_ms == 0 || change.expires_ms > change.now;
            if ((env.flags & kFlagExpiredHold) != 0 && lives_on) {
                env.flags &= ~static_cast<std::uint32_t>(kFlagExpiredHold);
                env.held = false;
            }
            if (change.flush) {
                queue_deferred(env);
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
        submit(Op{[this, id](WriteTxn& txn) { return store_.remove(txn, id); }, std::move(done),
                  false});
    }

    void promote_due(UnixMillis now, std::size_t max, Done done) override {
        Op op{[this, now, max](WriteTxn& txn) { return store_.promote_due(txn, now, max); },
              std::move(done), false};
        op.first = true;
        submit(std::move(op));
    }

    void expire(std::vector<Expiry> items, UnixMillis now, BatchDone done) override {
        submit_batch(
            std::move(items), kMaxExpirePerOp, "expiries",
            [](const Expiry& e) { return e.dsn ? e.dsn->body.size() : 0; },
            [this, now](WriteTxn& txn, const Expiry& e) { return store_.expire(txn, e, now); },
            [](const Expiry& e) {
                return e.dsn ? std::optional(e.dsn->envelope.id) : std::nullopt;
            },
            std::move(done), true);
    }

    void sweep_removed_recipients(std::size_t max, CountDone done) override {
        auto swept = std::make_shared<std::size_t>(0);
        submit(Op{[this, max, swept](WriteTxn& txn) -> Status {
                      SPOOLD_TRY(n, indexes_.sweep(txn, max, kMaxSweepKeysPerOp));
                      *swept = n;
                      return {};
                  },
                  [swept, done = std::move(done)](const Status& st) {
                      if (!done) {
                          return;
                      }
                      if (!st) {
                          done(tl::unexpected(st.error()));
                          return;
                      }
                      done(*swept);
                  },
                  false});
    }

    void put_meta(std::string key, std::string value, Done done) override {
        submit(Op{[this, key = std::move(key), value = std::move(value)](WriteTxn& txn) -> Status {
                      SPOOLD_CHECK(txn.put(t_.meta, key, value));
                      return {};
                  },
                  std::move(done), false});
    }

    // ---- reads ----

    Result<Counters> counters() override {
        SPOOLD_TRY(txn, env_->begin_read());
        return indexes_.counters(txn);
    }

    Result<std::optional<Envelope>> get(QueueId id) override {
        SPOOLD_TRY(txn, env_->begin_read());
        SPOOLD_TRY(raw, store_.record(txn, id));
        if (!raw) {
            return std::optional<Envelope>{};
        }
        auto env = record::decode_envelope(*raw);
        if (!env) {
            report_corrupt(id, env.error());
            return tl::unexpected(env.error());
        }
        return std::optional<Envelope>{std::move(*env)};
    }

    Result<BodyPiece> read_body(QueueId id, std::uint32_t from_chunk,
                                std::size_t max_bytes) override {
        SPOOLD_TRY(txn, env_->begin_read());
        SPOOLD_TRY(raw, store_.record(txn, id));
        if (!raw) {
            return fail(ErrorKind::kNotFound, fmt::format("{}: no such message", id.text()));
        }
        auto facts = record::decode_facts(*raw);
        if (!facts) {
            report_corrupt(id, facts.error());
            return tl::unexpected(facts.error());
        }
        return bodies_.read(txn, facts->body_ref, from_chunk, max_bytes);
    }

    Result<std::vector<QueueId>> ready_after(ClassId klass, QueueId after,
                                             std::size_t max) override {
        SPOOLD_TRY(txn, env_->begin_read());
        return indexes_.ready_after(txn, klass, after, max);
    }

    Result<std::vector<QueueId>> due(UnixMillis now, std::size_t max) override {
        SPOOLD_TRY(txn, env_->begin_read());
        SPOOLD_TRY(entries, indexes_.due(txn, now, max));
        return ids_of(entries);
    }

    Result<std::vector<QueueId>> expired(UnixMillis now, std::size_t max) override {
        SPOOLD_TRY(txn, env_->begin_read());
        SPOOLD_TRY(entries, indexes_.expired(txn, now, max));
        return ids_of(entries);
    }

    std::uint32_t format() const override { return format_; }

    Result<std::vector<QueueId>> dsns_after(QueueId after, std::size_t max) override {
        SPOOLD_CHECK(indexed());
        SPOOLD_TRY(txn, env_->begin_read());
        return indexes_.dsns_after(txn, after, max);
    }

    Result<IdPage> recipient_page(std::string_view address, AddressForm form, char delimiter,
                                  std::string_view resume, std::size_t max) override {
        SPOOLD_CHECK(indexed());
        const std::string lowered = address::ascii_lower(address);
        const std::string prefix = form == AddressForm::kExact
                                       ? record::rcpt_prefix(lowered)
                                       : record::rcpt_tag_prefix(lowered, delimiter);
        SPOOLD_TRY(txn, env_->begin_read());
        return indexes_.recipient_page(txn, prefix, resume, max);
    }

    Result<std::vector<QueueId>> recipient_after(std::string_view address, QueueId after,
                                                 std::size_t max) override {
        SPOOLD_CHECK(indexed());
        SPOOLD_TRY(txn, env_->begin_read());
        return indexes_.recipient_after(txn, address::ascii_lower(address), after, max);
    }

    Result<std::vector<std::string>> ready_domains(ClassId klass, std::size_t max) override {
        SPOOLD_CHECK(indexed());
        SPOOLD_TRY(txn, env_->begin_read());
        return indexes_.ready_domains(txn, klass, {}, max);
    }

    Result<std::vector<QueueId>> ready_in_domain(ClassId klass, std::string_view domain,
                                                 QueueId after, std::size_t max) override {
        SPOOLD_CHECK(indexed());
        SPOOLD_TRY(txn, env_->begin_read());
        return indexes_.ready_in_domain(txn, klass, address::ascii_lower(domain), after, max);
    }

    Result<std::uint64_t> removed_recipients_pending() override {
        SPOOLD_TRY(txn, env_->begin_read());
        return indexes_.removed_pending(txn);
    }

    Result<std::vector<Envelope>> envelopes_after(QueueId after, std::size_t max) override {
        std::vector<Envelope> out;
        if (after.value == std::numeric_limits<std::uint64_t>::max()) {
            return out;
        }
        SPOOLD_TRY(txn, env_->begin_read());
        SPOOLD_CHECK(store_.scan_records(txn, QueueId{after.value + 1},
                                         [&](QueueId id, std::string_view raw) {
                                             if (out.size() >= max) {
                                                 return false;
                                             }
                                             auto env = record::decode_envelope(raw);
                                             if (!env) {
                                                 // A listing goes on past a bad record; the
                                                 // record is quarantined.
                                                 report_corrupt(id, env.error());
                                                 return true;
                                             }
                                             out.push_back(std::move(*env));
                                             return true;
                                         }));
        return out;
    }

    Result<std::optional<QueueId>> oldest() override {
        SPOOLD_TRY(txn, env_->begin_read());
        return store_.oldest(txn);
    }

    Result<std::optional<QueueId>> newest() override {
        SPOOLD_TRY(txn, env_->begin_read());
        return store_.newest(txn);
    }

    Result<std::optional<std::string>> get_meta(std::string_view key) override {
        SPOOLD_TRY(txn, env_->begin_read());
        SPOOLD_TRY(v, txn.get(t_.meta, key));
        if (!v) {
            return std::optional<std::string>{};
        }
        return std::optional<std::string>{std::string(*v)};
    }

    Result<SpaceInfo> space() override {
        SPOOLD_TRY(info, env_->info());
        // The data file never shrinks and its last page only grows, so neither says how
        // full the spool is: count the pages the B-trees hold now (the freelist's own
        // pages included). Pages freed by deliveries are reused before the file grows, so
        // they count as free space for the disk watermark too.
        SPOOLD_TRY(txn, env_->begin_read());
        SPOOLD_TRY(used, used_pages(txn, t_));
        SpaceInfo s;
        s.map_size = info.map_size;
        const std::uint64_t file_pages = info.last_page + 1;
        s.used_bytes = std::min(used, file_pages) * info.page_size;
        const std::uint64_t reusable = (file_pages - std::min(used, file_pages)) * info.page_size;
        std::error_code ec;
        const auto fs = std::filesystem::space(options_.path, ec);
        if (!ec) {
            s.fs_free_bytes = fs.available + reusable;
        }
        return s;
    }

    Result<std::vector<QueueId>> quarantined(std::size_t max) override {
        SPOOLD_TRY(txn, env_->begin_read());
        return store_.quarantined(txn, max);
    }

    Result<CheckReport> check(bool bodies, bool repair) override {
        CheckReport report;
        SPOOLD_CHECK(checker_.check(*env_, bodies, report));
        if (repair) {
            if (options_.read_only) {
                return fail(ErrorKind::kInvalid, "repair needs a writable spool");
            }
            SPOOLD_CHECK(wait([this](Done d) {
                submit(Op{[this](WriteTxn& txn) { return checker_.rebuild(txn); }, std::move(d),
                          true});
            }));
            report.repaired = true;
        }
        return report;
    }

private:
    // The format 2 indexes are there (a format 1 spool opened read-only lacks them).
    Status indexed() const {
        if (format_ < kIndexedFormat) {
            return fail(ErrorKind::kUnavailable,
                        fmt::format("spool format {}: its indexes are built when spoold (or a "
                                    "writing spoolctl) opens it",
                                    format_));
        }
        return {};
    }

    // Up to `max` `items` applied by `apply` in one transaction (more: kInvalid, nothing
    // written): an item that fails cleanly (not found, invalid, quarantined) is skipped with
    // its status, the rest commit. `bytes_of` gives an item's new data (none at all: the op
    // does not grow the spool), `added` the message it spools, if any (the arrival listener
    // hears of it when the item committed); `first`: ahead of the queued intake.
    template <typename Item, typename BytesOf, typename Apply, typename Added>
    void submit_batch(std::vector<Item> items, std::size_t max, std::string_view what,
                      BytesOf bytes_of, Apply apply, Added added, BatchDone done, bool first) {
        if (items.size() > max) {
            done(fail(ErrorKind::kInvalid,
                      fmt::format("{} {} in one batch, at most {}", items.size(), what, max)),
                 {});
            return;
        }
        auto batch = std::make_shared<const std::vector<Item>>(std::move(items));
        std::size_t bytes = 0;
        for (const Item& item : *batch) {
            bytes += bytes_of(item);
        }
        auto results = std::make_shared<std::vector<Status>>();
        Op op{[batch, apply = std::move(apply), results](WriteTxn& txn) -> Status {
                  // Re-runnable: a re-run batch starts the results again.
                  results->assign(batch->size(), Status{});
                  for (std::size_t i = 0; i < batch->size(); ++i) {
                      Status st = apply(txn, (*batch)[i]);
                      if (!st && may_be_dirty(st.error())) {
                          return st;
                      }
                      (*results)[i] = std::move(st);
                  }
                  return {};
              },
              [this, batch, added = std::move(added), results,
               done = std::move(done)](const Status& st) {
                  if (st) {
                      for (std::size_t i = 0; i < batch->size(); ++i) {
                          const std::optional<QueueId> id = added((*batch)[i]);
                          if (id && (*results)[i]) {
                              arrived(*id);
                          }
                      }
                  }
                  done(st, st ? std::move(*results) : std::vector<Status>{});
              },
              bytes > 0, bytes};
        op.first = first;
        submit(std::move(op));
    }

    void submit(Op op) {
        if (!writer_) {
            SPOOLD_ASSERT(options_.read_only, "a writable spool without its writer");
            op.done(fail(ErrorKind::kInvalid, "spool opened read-only"));
            return;
        }
        writer_->submit(std::move(op));
    }

    static void queue_deferred(Envelope& env) {
        for (Recipient& r : env.recipients) {
            if (r.state == RcptState::kDeferred) {
                r.state = RcptState::kQueued;
                r.next_attempt_ms = 0;
            }
        }
    }

    // When the change gives the message a ready-index entry it lacked (released, flushed,
    // moved to another class), it may now be ready behind a reader's cursor, so the ready
    // epoch moves in the same transaction; a new expiry alone or a hold leaves it.
    void modify(QueueId id, Done done, std::function<Status(Envelope&)> change) {
        submit(Op{[this, id, change = std::move(change)](WriteTxn& txn) -> Status {
                      bool readies = false;
                      SPOOLD_CHECK(store_.modify(txn, id, [&](Envelope& env) -> Status {
                          const MessageFacts before = message_facts(env, 0);
                          SPOOLD_CHECK(change(env));
                          readies = Indexes::adds_ready_entry(before, message_facts(env, 0));
                          return {};
                      }));
                      if (!readies) {
                          return {};
                      }
                      SPOOLD_TRY(epoch, txn.get(t_.meta, kReadyEpochKey));
                      const std::uint64_t n =
                          epoch && epoch->size() == 8 ? record::read_be64(*epoch) : 0;
                      SPOOLD_CHECK(txn.put(t_.meta, kReadyEpochKey, record::be64(n + 1)));
                      return {};
                  },
                  std::move(done), false});
    }

    // Message `id` is in the spool now (its commit returned): the arrival listener hears of it.
    void arrived(QueueId id) {
        const std::lock_guard lock(arrivals_mutex_);
        if (arrival_) {
            arrival_(id);
        }
    }

    // `done`, after the listener heard of message `id` when the op committed.
    Done arriving(QueueId id, Done done) {
        return [this, id, done = std::move(done)](Status st) {
            if (st) {
                arrived(id);
            }
            if (done) {
                done(std::move(st));
            }
        };
    }

    // A corrupt record seen by a reader: quarantined by the writer (never from a read txn).
    void report_corrupt(QueueId id, const Error& why) {
        log::error("event=spool_corrupt_record id={} error={}", id.text(), log::quote(why.message));
        if (options_.read_only) {
            return;
        }
        submit(Op{[this, id](WriteTxn& txn) -> Status {
                      auto loaded = store_.load(txn, id);
                      if (!loaded && may_be_dirty(loaded.error())) {
                          return tl::unexpected(loaded.error());
                      }
                      return {};
                  },
                  Done{}, false});
    }

    SpoolOptions options_;
    const Clock& clock_;
    std::unique_ptr<lmdb::Env> env_;
    Tables t_;
    std::uint32_t format_;
    Indexes indexes_;
    Bodies bodies_;
    Store store_;
    Staging staging_;
    Checker checker_;
    QueueIdGenerator ids_;
    std::mutex arrivals_mutex_; // the writer thread calls arrival_ under it
    ArrivalListener arrival_;
    std::unique_ptr<Writer> writer_; // none when read-only
};

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
    SPOOLD_TRY(env, lmdb::Env::open(eo));
    SPOOLD_TRY(tables, open_tables(*env, options.create && !options.read_only));
    SPOOLD_TRY(format, check_format(*env, tables));
    SPOOLD_TRY(info, env->info());
    std::size_t chunk = options.body_chunk_bytes;
    if (chunk == 0) {
        // Exactly one overflow page per chunk: pages are full whatever the key order, and
        // the freelist never has to find a contiguous run (ARCHITECTURE.md, "Spool layout").
        chunk = info.page_size - kPageHeaderSize;
    }
    auto spool = std::make_unique<LmdbSpool>(options, std::move(env), tables, chunk, format);
    SPOOLD_CHECK(spool->start());
    log::info("event=spool_open path={} read_only={} chunk={}", log::quote(options.path),
              options.read_only, chunk);
    return std::unique_ptr<Spool>(std::move(spool));
}

} // namespace spoold::spool
