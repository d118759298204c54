// What spoolctl prints: the list table, one JSON object per message, the `show` view and
// the `status` report, each as text for stdout. Formatting only: the verbs gather the
// data, and nothing here reads the spool or the clock.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spool/spool.hpp"

namespace spoold::spoolctl {

// Class names by ClassId (from the config or the spool's "classes" meta key); ids
// without a name are shown as numbers.
class ClassNames {
public:
    ClassNames() = default;
    explicit ClassNames(std::vector<std::string> names) : names_(std::move(names)) {}
    // "urgent,normal,bulk" as the daemon writes it to meta "classes".
    static ClassNames from_csv(std::string_view csv);

    std::string name(spool::ClassId id) const;
    // A class given by name or by number ("bulk", "2"); nullopt when neither.
    std::optional<spool::ClassId> find(std::string_view text) const;
    bool empty() const { return names_.empty(); }
    const std::vector<std::string>& names() const { return names_; }

private:
    std::vector<std::string> names_;
};

// Control bytes replaced by '?': addresses and replies come from the network, and a
// terminal must not interpret them.
std::string printable(std::string_view text);

std::string table_header();
std::string table_row(const spool::Envelope& env, spool::MsgState state, UnixMillis now_ms,
                      const ClassNames& classes);
// One message as one JSON line; `show --json` adds its header section (`headers`).
std::string json_message(const spool::Envelope& env, spool::MsgState state, UnixMillis now_ms,
                         const ClassNames& classes,
                         std::optional<std::string_view> headers = std::nullopt);
// Envelope and recipients as `show` prints them, before the headers.
std::string show_text(const spool::Envelope& env, spool::MsgState state, UnixMillis now_ms,
                      const ClassNames& classes);

// One mailstore's line of `status`, from the meta keys the running daemon publishes;
// each field is absent when no daemon has published it.
struct MailstoreStatus {
    std::string name;
    std::optional<std::string> breaker;     // "closed", "open", "half-open"
    std::optional<std::uint64_t> limit;     // deliveries allowed in flight now (pacing)
    std::optional<std::uint64_t> in_flight; // deliveries in flight
    std::optional<std::string> rate;        // messages/s as the daemon publishes it
    bool paused = false;
};

// Fills breaker, limit and in_flight from the daemon's "mailstore.NAME.breaker" value
// ("closed limit=2 in_flight=0"); fields it does not hold stay absent.
void parse_breaker_meta(std::string_view value, MailstoreStatus& into);

struct StatusReport {
    spool::Counters counters;
    std::optional<QueueId> oldest;
    std::optional<UnixMillis> oldest_arrival_ms;
    bool paused = false;
    std::vector<MailstoreStatus> mailstores;
    std::optional<spool::SpaceInfo> space;
    // Removed messages whose recipient-index entries wait for the drain's sweep.
    std::optional<std::uint64_t> removed_pending;
    UnixMillis now_ms = 0;
};

std::string status_text(const StatusReport& report, const ClassNames& classes);
std::string status_json(const StatusReport& report, const ClassNames& classes);

} // namespace spoold::spoolctl
