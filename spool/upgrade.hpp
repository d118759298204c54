// The in-place upgrade of an older spool to the current format, in bounded write transactions
// that resume after a crash: format 1 -> 2 adds the recipient, ready-by-domain and DSN indexes,
// built from the records; 2 -> 3 adds the empty rcpt_gone table (created at open), one step
// that only writes meta; 1 -> 3 is the 1 -> 2 walk, its last step writing 3. meta
// `format_version` changes only in the step that completes it.
// Which entries an index holds is indexes.hpp's business; this file only walks the records.
#pragma once

#include <cstddef>
#include <string_view>

#include "common/result.hpp"
#include "spool/indexes.hpp"
#include "spool/lmdb/lmdb.hpp"
#include "spool/store.hpp"
#include "spool/tables.hpp"

namespace spoold::spool {

// meta key: the id the next step starts at (big-endian u64), while an upgrade is under way.
inline constexpr std::string_view kUpgradeNextKey = "upgrade_next";
inline constexpr std::size_t kUpgradeStep = 10'000; // records per write transaction

class Upgrader {
public:
    Upgrader(lmdb::Env& env, const Tables& tables, const Store& store, const Indexes& indexes)
        : env_(env), t_(tables), store_(store), indexes_(indexes) {}

    // One step: the next `step` records get the new indexes' entries, and the progress is
    // written in the same transaction. Returns true once the spool is at kFormatVersion.
    Result<bool> step(std::size_t step = kUpgradeStep) const;
    // Steps until the spool is at kFormatVersion, logging the progress.
    Status run(std::size_t step = kUpgradeStep) const;

private:
    lmdb::Env& env_;
    Tables t_;
    const Store& store_;
    const Indexes& indexes_;
};

} // namespace spoold::spool
