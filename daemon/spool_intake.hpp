// smtp::Intake over the spool: body buffering and staging, classification at commit,
// recipient verdicts and admission by watermark. The policy decisions themselves come
// in as functions so this file knows how to store, not what the rules are.
#pragma once

#include <atomic>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "policy/header_scan.hpp"
#include "smtp/intake.hpp"
#include "spool/spool.hpp"

namespace spoold::daemon {

// What the classifier sees of a message at the end of DATA.
struct ClassifyInput {
    const smtp::MessageInfo* info = nullptr;
    std::string_view header_block; // the header section, at most policy::kHeaderScanBytes
    std::uint64_t size = 0;
};

struct ClassDecision {
    spool::ClassId klass = 0;
    std::string name;
    UnixMillis expires_ms = 0; // 0 = never
    // A trusted peer's arrival time (spoolctl xfer); else the message arrived now.
    std::optional<UnixMillis> arrival_ms;
};

struct IntakeHooks {
    std::function<smtp::RecipientVerdict(const std::string&)> check_recipient;
    std::function<ClassDecision(const ClassifyInput&, UnixMillis arrival_ms)> classify;
};

// What in-flight messages update as they are written to the spool.
struct IntakeCounters {
    std::atomic<std::uint64_t> accepted{0}; // messages committed (250 sent)
    // Bytes that may still be written before the next admission sample; may go negative.
    std::atomic<std::int64_t> budget{std::numeric_limits<std::int64_t>::max()};
};
// Spool bytes a message costs beyond its body (envelope record, index entries; bodies
// fill 4080 of each 4096-byte page): charged against the admission budget.
inline constexpr std::int64_t kMessageOverheadBytes = 512;

// Bodies up to this size stay in memory and are committed in one operation; larger
// ones are staged in chunks of this size, so a 50 MiB message costs a few of these. The
// header section comes at the commit and goes in front (see smtp::IncomingMessage).
inline constexpr std::size_t kStageThreshold = 128 * 1024;
// The classifier reads this much of a message (policy/header_scan.hpp).
using policy::kHeaderScanBytes;

class SpoolIntake final : public smtp::Intake {
public:
    SpoolIntake(spool::Spool& spool, IntakeHooks hooks, const Clock& clock);

    Status admit() override;
    smtp::RecipientVerdict check_recipient(const std::string& address) override;
    Result<std::unique_ptr<smtp::IncomingMessage>> begin() override;

    // Called by the daemon's admission timer: false makes admit() answer kSpoolFull.
    // `budget` is how many more bytes may be written to the spool before the next call
    // (room below the watermark and above min_free_disk): admit() refuses once messages
    // committed or staged since have used it, so the watermark holds between samples.
    void set_accepting(bool accepting, const std::string& reason,
                       std::int64_t budget = std::numeric_limits<std::int64_t>::max());
    void set_hooks(IntakeHooks hooks);
    // Messages committed (250 sent) since start.
    std::uint64_t accepted_total() const {
        return shared_->accepted.load(std::memory_order_relaxed);
    }

private:
    std::shared_ptr<const IntakeHooks> hooks() const;

    spool::Spool& spool_;
    mutable std::mutex hooks_mutex_; // reload swaps hooks while sessions run
    std::shared_ptr<const IntakeHooks> hooks_;
    const Clock& clock_;
    std::atomic<bool> accepting_{true};
    // Shared with in-flight messages, whose commit callbacks may outlive a reload.
    std::shared_ptr<IntakeCounters> shared_ = std::make_shared<IntakeCounters>();
};

} // namespace spoold::daemon
