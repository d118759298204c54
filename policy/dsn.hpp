// Delivery status notifications (RFC 3464): whether one is due for a recipient (RFC 3461
// NOTIFY, never to the null sender) and the complete message text. Plain inputs mirror
// the few spool fields needed (the daemon maps them); spooling and sending are not here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.hpp"
#include "policy/config.hpp"

namespace spoold::policy {

// RFC 3461 NOTIFY bits, equal to spool::NotifyBits (the daemon static_asserts it);
// 0 means the client gave no NOTIFY.
inline constexpr std::uint8_t kDsnNotifyNever = 1;
inline constexpr std::uint8_t kDsnNotifySuccess = 2;
inline constexpr std::uint8_t kDsnNotifyFailure = 4;
inline constexpr std::uint8_t kDsnNotifyDelay = 8;

enum class DsnAction {
    kFailed,    // the mailstore gave a permanent failure
    kDelayed,   // still queued after bounces.delay_warning (a warning, delivery goes on)
    kExpired,   // retention ran out; reported as "failed" (RFC 3464 has no "expired")
    kDelivered, // into the mailbox (LMTP, Maildir): we are the final delivery agent
    kRelayed,   // to an SMTP next hop that does not offer DSN: no report will follow
};

// RFC 3461 4.1: NEVER -> no DSN; failures (and expiry) when NOTIFY has FAILURE or was not
// given; delay warnings when NOTIFY has DELAY or was not given (the MTA's choice: we
// follow Postfix, and the daemon only asks when bounces.delay_warning is set); success
// (delivered, relayed) only when NOTIFY has SUCCESS. Never to the null sender: a DSN
// about a DSN would loop.
bool dsn_wanted(std::string_view envelope_sender, std::uint8_t notify, DsnAction action);

// Whether a mailstore's reply ("550 5.1.1 no such user") says the recipient does not
// exist (RFC 3463 5.1.1): what a DSN to a forged sender is made of without a directory.
bool unknown_recipient_reply(std::string_view reply);

struct DsnRecipient {
    std::string address; // the recipient we tried (Final-Recipient)
    std::string orcpt;   // ORCPT as given, "rfc822;addr" (xtext-decoded); may be empty
    DsnAction action = DsnAction::kFailed;
    std::string status;             // "5.1.1"; empty = taken from diagnostic, else a default
    std::string diagnostic;         // last reply, one line, "550 5.1.1 no such user"; may be empty
    UnixMillis last_attempt_ms = 0; // 0 = never attempted (no Last-Attempt-Date)
};

struct DsnInput {
    std::string reporting_host;  // Config::hostname
    std::string from_address;    // dsn_from_address(); the From: header
    std::string envelope_sender; // original MAIL FROM: the To: header and where it goes
    std::string envid;           // original ENVID (xtext-decoded); may be empty
    std::string ret;             // original RET: "FULL", "HDRS" or empty (= HDRS)
    std::string queue_id;        // original message's queue id, for the text and Message-ID
    UnixMillis arrival_ms = 0;
    UnixMillis now_ms = 0;
    std::vector<DsnRecipient> recipients; // those dsn_wanted() said yes to
    // The original message (with RET=FULL) or at least its header: only the header is
    // returned unless RET=FULL, some recipient failed or expired (RFC 3461 4.3: a success
    // report returns the header) and the message fits in max_full_bytes.
    std::string_view original;
    std::size_t max_full_bytes = 10ULL << 20U;
};

// From: of DSNs: bounces.dsn_sender when it holds '@', else "<it>@<hostname>".
std::string dsn_from_address(const Config& config);

// The complete message, CRLF line ends, ready to spool with the null sender as MAIL FROM
// and input.envelope_sender as the only recipient: multipart/report;
// report-type=delivery-status with a text/plain explanation (subject and opening by the
// gravest action: failed, then delayed, then delivered or relayed), message/delivery-status
// and text/rfc822-headers (or message/rfc822 for RET=FULL). The boundary never occurs in
// the returned original.
std::string build_dsn(const DsnInput& input);

} // namespace spoold::policy
