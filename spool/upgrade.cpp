#include "spool/upgrade.hpp"

#include <charconv>
#include <chrono>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common/log.hpp"
#include "spool/record.hpp"

namespace spoold::spool {
namespace {

Result<std::uint32_t> stored_format(const lmdb::Txn& txn, const Tables& t) {
    SPOOLD_TRY(found, txn.get(t.meta, kFormatKey));
    std::uint32_t version = 0;
    if (found) {
        std::from_chars(found->data(), found->data() + found->size(), version);
    }
    if (version < kOldestFormat || version > kFormatVersion) {
        return fail(ErrorKind::kCorrupt, "spool format version unreadable during the upgrade");
    }
    return version;
}

} // namespace

Result<bool> Upgrader::step(std::size_t step) const {
    SPOOLD_TRY(txn, env_.begin_write());
    // Read inside the write transaction: another process upgrading the same spool takes
    // turns with this one, and each step starts where the last one (of either) stopped.
    SPOOLD_TRY(format, stored_format(txn, t_));
    if (format == kFormatVersion) {
        return true;
    }
    if (!Indexes::lacks_index(format)) {
        // 2 -> 3: the new table (rcpt_gone, empty) was created when the spool was opened
        // writable; nothing derives from the records, so one step of meta completes it.
        SPOOLD_CHECK(txn.put(t_.meta, kFormatKey, std::to_string(kFormatVersion)));
        SPOOLD_CHECK(txn.del(t_.meta, kUpgradeNextKey));
        SPOOLD_CHECK(txn.commit());
        return true;
    }
    // 1 -> 3 (or 1 -> 2 before): the format 2 indexes from the records, in steps; the step
    // that completes them sets kFormatVersion, as no later format adds an index.
    SPOOLD_TRY(progress, txn.get(t_.meta, kUpgradeNextKey));
    QueueId from{0};
    if (progress && progress->size() == 8) {
        from = QueueId{record::read_be64(*progress)};
    }
    std::vector<MessageFacts> found;
    std::optional<QueueId> last;
    bool more = false;
    SPOOLD_CHECK(store_.scan_records(txn, from, [&](QueueId id, std::string_view raw) {
        if (found.size() >= step) {
            more = true;
            return false;
        }
        last = id;
        auto env = record::decode_envelope(raw);
        auto header = record::decode_facts(raw);
        if (env && header) {
            found.emplace_back(*header, record::recipient_facts_of(*env));
        }
        // An undecodable record is left as it is: check reports it, and the first
        // operation on it quarantines it.
        return true;
    }));
    for (const MessageFacts& f : found) {
        SPOOLD_CHECK(indexes_.add_entries_after(txn, f, format));
    }
    // A malformed key (read as id 0) cannot be resumed after: then this step ends it.
    const bool done = !more || !last || last->value + 1 <= from.value;
    if (done) {
        SPOOLD_CHECK(txn.put(t_.meta, kFormatKey, std::to_string(kFormatVersion)));
        SPOOLD_CHECK(txn.del(t_.meta, kUpgradeNextKey));
    } else {
        SPOOLD_CHECK(txn.put(t_.meta, kUpgradeNextKey, record::msg_key(QueueId{last->value + 1})));
    }
    SPOOLD_CHECK(txn.commit());
    return done;
}

Status Upgrader::run(std::size_t step_size) const {
    const auto started = std::chrono::steady_clock::now();
    log::info("event=spool_upgrade_started path={} to={}", log::quote(env_.path()), kFormatVersion);
    std::uint64_t steps = 0;
    for (;;) {
        SPOOLD_TRY(done, step(step_size));
        ++steps;
        if (done) {
            break;
        }
        constexpr std::uint64_t kLogEvery = 100;
        if (steps % kLogEvery == 0) {
            log::info("event=spool_upgrade_progress records={}", steps * step_size);
        }
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - started)
                        .count();
    log::info("event=spool_upgraded path={} format={} ms={}", log::quote(env_.path()),
              kFormatVersion, ms);
    return {};
}

} // namespace spoold::spool
