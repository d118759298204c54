// The narrow contract between the SMTP listener and whatever stores messages
// (OpenSMTPD's create -> write -> commit | rollback). SMTP code never touches LMDB:
// the daemon implements these interfaces over the spool and the policy.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/queue_id.hpp"
#include "common/reply.hpp"
#include "common/result.hpp"
#include "common/xfer_claim.hpp"

namespace spoold::smtp {

struct RecipientInfo {
    std::string address;     // without angle brackets
    std::string orcpt;       // RFC 3461 ORCPT, xtext-decoded
    std::uint8_t notify = 0; // spool::NotifyBits values
};

struct MessageInfo {
    std::string mail_from;   // empty = null sender
    std::string mail_params; // raw parameters of MAIL FROM
    std::string ret;         // "FULL" / "HDRS" / ""
    std::string envid;
    std::optional<XferClaim> xfer; // claimed by the client: trusted only from xfer.peers
    bool smtputf8 = false;
    bool eight_bit_mime = false;
    std::string client_addr;
    std::string helo;
    std::string tls; // empty when plain
    std::vector<RecipientInfo> recipients;
    // A filter quarantined the message: it is stored held, with this reason.
    std::string hold_reason;
};

struct CommitInfo {
    std::string class_name; // for the log line
};

// One message being received. Callbacks may run on any thread; the Asio driver
// posts them back to its own executor.
class IncomingMessage {
public:
    virtual ~IncomingMessage() = default;
    virtual QueueId id() const = 0;
    // The message after its header section, in wire order: dot-stuffing undone, CRLF line
    // ends, starting with the empty line that ends the header section (if any). `done`
    // fires when the bytes are safely buffered or staged; callers keep one append in
    // flight (that is the memory bound).
    virtual void append(std::string data, std::function<void(Status)> done) = 0;
    // Commits envelope and message durably: `head`, the header section as it is to be
    // stored (our Received: header first, filters' changes applied, each field with its
    // CRLF; at most smtp::kMaxHeaderSection plus our own fields), goes in front of the
    // appended bytes. `done` fires after the commit is on disk; only then may the client
    // hear 250. On error nothing of the message remains.
    virtual void commit(MessageInfo info, std::string head,
                        std::function<void(Result<CommitInfo>)> done) = 0;
    // Drops the message (RSET, abort, disconnect). Safe to call more than once.
    virtual void rollback() = 0;
};

enum class RecipientVerdict {
    kAccept,
    kRelayDenied, // not a local domain: 550 5.7.1
    kUnknownUser, // local domain, no such user: 550 5.1.1
    kTempFail,    // directory unavailable and policy says defer: 451 4.3.0
};

class Intake {
public:
    virtual ~Intake() = default;
    // Admission before MAIL/RCPT: an error (kSpoolFull) means 452 4.3.1.
    virtual Status admit() = 0;
    virtual RecipientVerdict check_recipient(const std::string& address) = 0;
    virtual Result<std::unique_ptr<IncomingMessage>> begin() = 0;
};

} // namespace spoold::smtp
