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

Status Checker::check(const lmdb::Txn& txn, bool bodies, CheckReport& report) const {
    const Indexes::Problem problem = [&report](std::string line) {
        add_problem(report, std::move(line));
    };
    // Records: each in exactly the indexes its facts call for, bodies add up.
    Status inner;
    SPOOLD_CHECK(store_.scan_records(txn, QueueId{0}, [&](QueueId id, std::string_view v) {
        ++report.records;
        auto env = record::decode_envelope(v);
        if (!env) {
            problem(fmt::format("record {}: {}", id.text(), env.error().message));
            return true;
        }
        IndexFacts f = facts_of_decoded(v);
        // Checked under the id the record is stored at, as the indexes are looked up by it.
        f.id = id;
        const auto si = static_cast<std::size_t>(f.state);
        report.scanned.messages[f.klass][si] += 1;
        report.scanned.bytes[f.klass][si] += f.size;
        inner = indexes_.check_record(txn, f, problem);
        if (inner && bodies) {
            auto stored = bodies_.stored_bytes(txn, f.body_ref);
            if (!stored) {
                inner = tl::unexpected(stored.error());
            } else if (*stored != f.size) {
                problem(fmt::format("body {}: chunks hold {} bytes, envelope says {}", id.text(),
                                    *stored, f.size));
            }
        }
        return static_cast<bool>(inner);
    }));
    SPOOLD_CHECK(inner);
    // Index entries: each points at a record whose facts give that entry.
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
    SPOOLD_CHECK(indexes_.check_entries(txn, facts_of, problem, report.index_entries));
    return indexes_.check_counters(txn, report.scanned, problem);
}

Status Checker::rebuild(lmdb::WriteTxn& txn) const {
    SPOOLD_CHECK(indexes_.clear(txn));
    std::vector<std::pair<QueueId, Error>> bad;
    std::vector<IndexFacts> good;
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
                good.push_back(facts_of_decoded(v));
            }
            return true;
        }));
        for (const IndexFacts& f : good) {
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
