#include "spool/check.hpp"

#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "common/assert.hpp"
#include "common/log.hpp"
#include "spool/record.hpp"

namespace spoold::spool {
namespace {

using record::IndexFacts;

void add_problem(CheckReport& r, std::string line) {
    if (r.problems.size() < kMaxCheckProblems) {
        r.problems.push_back(std::move(line));
    } else {
        ++r.more_problems;
    }
}

// The header of a record that decode_envelope accepted: it read the same header first.
IndexFacts facts_of_decoded(std::string_view raw) {
    auto f = record::decode_facts(raw);
    SPOOLD_ASSERT(f.has_value(), "a decodable record with an undecodable header");
    return *f;
}

} // namespace

Result<std::optional<QueueId>> Checker::scan_records(const lmdb::Txn& txn, QueueId from,
                                                     std::size_t step, bool bodies,
                                                     CheckReport& report,
                                                     IndexDigest* digest) const {
    const Indexes::Problem problem = [&report](std::string line) {
        add_problem(report, std::move(line));
    };
    // Each record in exactly the indexes its facts call for (looked up, or added to
    // `digest`), its body adding up.
    Status inner;
    std::size_t seen = 0;
    std::optional<QueueId> next;
    SPOOLD_CHECK(store_.scan_records(txn, from, [&](QueueId id, std::string_view v) {
        if (seen == step) {
            next = id;
            return false;
        }
        ++seen;
        ++report.records;
        auto env = record::decode_envelope(v);
        if (!env) {
            problem(fmt::format("record {}: {}", id.text(), env.error().message));
            return true;
        }
        MessageFacts f(facts_of_decoded(v), record::recipient_facts_of(*env));
        // Checked under the id the record is stored at, as the indexes are looked up by it.
        f.header.id = id;
        const auto si = static_cast<std::size_t>(f.header.state);
        report.scanned.messages[f.header.klass][si] += 1;
        report.scanned.bytes[f.header.klass][si] += f.header.size;
        if (digest != nullptr) {
            Indexes::digest_record(f, *digest);
        } else {
            inner = indexes_.check_record(txn, f, problem);
        }
        if (inner && bodies) {
            auto stored = bodies_.stored_bytes(txn, f.header.body_ref);
            if (!stored) {
                inner = tl::unexpected(stored.error());
            } else if (*stored != f.header.size) {
                problem(fmt::format("body {}: chunks hold {} bytes, envelope says {}", id.text(),
                                    *stored, f.header.size));
            }
        }
        return static_cast<bool>(inner);
    }));
    SPOOLD_CHECK(inner);
    // A malformed key reads as id 0 and cannot be resumed from: stop there.
    if (next && next->value <= from.value) {
        next.reset();
    }
    return next;
}

// Read transactions one after another, and whether they all saw one snapshot.
class Checker::Steps {
public:
    Steps(const lmdb::Env& env, const std::function<void()>& after_step)
        : env_(env), after_step_(after_step) {}

    Result<lmdb::ReadTxn> begin() {
        if (started_ && after_step_) {
            after_step_();
        }
        started_ = true;
        auto txn = env_.begin_read();
        if (txn) {
            last_ = txn->id();
            if (first_ == 0) {
                first_ = last_;
            }
        }
        return txn;
    }
    bool one_snapshot() const { return first_ == last_; }

private:
    const lmdb::Env& env_;
    const std::function<void()>& after_step_;
    bool started_ = false;
    std::uint64_t first_ = 0;
    std::uint64_t last_ = 0;
};

Result<bool> Checker::check_by_digest(Steps& steps, bool bodies, std::size_t step,
                                      CheckReport& report) const {
    IndexDigest from_records;
    for (std::optional<QueueId> from = QueueId{0}; from;) {
        SPOOLD_TRY(txn, steps.begin());
        if (!steps.one_snapshot()) {
            return false; // the spool is changing: only lookups can tell
        }
        SPOOLD_TRY(next, scan_records(txn, *from, step, bodies, report, &from_records));
        from = next;
    }
    // The entries removed messages left for the sweep are there until it runs: expected.
    for (std::optional<std::string> gone = std::string(); gone;) {
        SPOOLD_TRY(txn, steps.begin());
        if (!steps.one_snapshot()) {
            return false;
        }
        SPOOLD_TRY(next, indexes_.digest_removed(txn, from_records, *gone, step));
        gone = std::move(next);
    }
    IndexDigest from_tables;
    for (std::optional<EntryCursor> cursor = EntryCursor{}; cursor;) {
        SPOOLD_TRY(txn, steps.begin());
        if (!steps.one_snapshot()) {
            return false;
        }
        SPOOLD_TRY(next, indexes_.digest_entries(txn, from_tables, *cursor, step));
        cursor = next;
    }
    for (const std::uint64_t n : from_tables.count) {
        report.index_entries += n;
    }
    return steps.one_snapshot() && report.problems.empty() && from_records == from_tables;
}

Status Checker::check_by_lookup(Steps& steps, bool bodies, std::size_t step,
                                CheckReport& report) const {
    for (std::optional<QueueId> from = QueueId{0}; from;) {
        SPOOLD_TRY(txn, steps.begin());
        SPOOLD_TRY(next, scan_records(txn, *from, step, bodies, report, nullptr));
        from = next;
    }
    const Indexes::Problem problem = [&report](std::string line) {
        add_problem(report, std::move(line));
    };
    // Index entries: each points at a record whose facts give that entry.
    for (std::optional<EntryCursor> cursor = EntryCursor{}; cursor;) {
        SPOOLD_TRY(txn, steps.begin());
        const Indexes::FactsOf facts_of = [&](QueueId id) -> Result<std::optional<IndexFacts>> {
            SPOOLD_TRY(raw, store_.record(txn, id));
            if (!raw) {
                return std::optional<IndexFacts>{};
            }
            auto f = record::decode_facts(*raw);
            if (!f) {
                return std::optional<IndexFacts>{};
            }
            f->id = id;
            return std::optional<IndexFacts>{*f};
        };
        const Indexes::RecipientsOf recipients_of =
            [&](QueueId id) -> Result<std::optional<record::RecipientFacts>> {
            SPOOLD_TRY(raw, store_.record(txn, id));
            if (!raw) {
                return std::optional<record::RecipientFacts>{};
            }
            auto decoded = record::decode_envelope(*raw);
            if (!decoded) {
                return std::optional<record::RecipientFacts>{};
            }
            return std::optional<record::RecipientFacts>{record::recipient_facts_of(*decoded)};
        };
        SPOOLD_TRY(next, indexes_.check_entries(txn, facts_of, problem, report.index_entries,
                                                recipients_of, *cursor, step));
        cursor = next;
    }
    return {};
}

Status Checker::check(const lmdb::Env& env, bool bodies, CheckReport& report, std::size_t step,
                      const std::function<void()>& after_step) const {
    step = std::max<std::size_t>(1, step);
    Steps steps(env, after_step);
    // Records and index tables read in key order, the indexes compared by digest: linear in
    // the spool. Only when that cannot vouch for them (a problem, a difference, or a spool
    // that changed meanwhile) does each entry get looked up, which names what is wrong.
    CheckReport sequential;
    SPOOLD_TRY(agreed, check_by_digest(steps, bodies, step, sequential));
    if (agreed) {
        report = std::move(sequential);
    } else {
        report = CheckReport{};
        SPOOLD_CHECK(check_by_lookup(steps, bodies, step, report));
    }
    // The counters equal the scan only if the whole check was one snapshot.
    SPOOLD_TRY(txn, steps.begin());
    report.counters_compared = steps.one_snapshot();
    SPOOLD_TRY(pending, indexes_.removed_pending(txn));
    report.removed_pending = pending;
    if (report.counters_compared) {
        const Indexes::Problem problem = [&report](std::string line) {
            add_problem(report, std::move(line));
        };
        SPOOLD_CHECK(indexes_.check_counters(txn, report.scanned, problem));
    }
    return {};
}

Status Checker::rebuild(lmdb::WriteTxn& txn) const {
    SPOOLD_CHECK(indexes_.clear(txn));
    std::vector<std::pair<QueueId, Error>> bad;
    std::vector<MessageFacts> good;
    constexpr std::size_t kStep = 10'000; // bounded memory: collect, apply, continue
    QueueId from{0};
    for (;;) {
        good.clear();
        bad.clear();
        std::optional<QueueId> last;
        SPOOLD_CHECK(store_.scan_records(txn, from, [&](QueueId id, std::string_view v) {
            if (good.size() + bad.size() >= kStep) {
                return false;
            }
            last = id;
            auto env = record::decode_envelope(v);
            if (!env) {
                bad.emplace_back(id, env.error());
            } else {
                good.emplace_back(facts_of_decoded(v), record::recipient_facts_of(*env));
            }
            return true;
        }));
        for (const MessageFacts& f : good) {
            SPOOLD_CHECK(indexes_.add(txn, f));
        }
        for (const auto& [id, why] : bad) {
            // The indexes were cleared, so the record is only moved, not un-indexed.
            SPOOLD_TRY(raw, store_.record(txn, id));
            if (raw) {
                SPOOLD_CHECK(store_.move_to_corrupt(txn, id, std::string(*raw)));
                log::error("event=spool_quarantine id={} reason={} indexes=rebuilt", id.text(),
                           log::quote(why.message));
            }
        }
        if (good.size() + bad.size() < kStep || !last) {
            break;
        }
        // Continue strictly after the last record seen (quarantined ones are gone anyway).
        // Only a malformed key (read as id 0) could fail to move forward: stop there.
        const QueueId next{last->value + 1};
        if (next.value <= from.value) {
            break;
        }
        from = next;
    }
    log::info("event=spool_rebuild done=1");
    return {};
}

} // namespace spoold::spool
