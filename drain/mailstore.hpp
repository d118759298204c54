// What the drain delivers into: one Mailstore per configured store (LMTP, Maildir,
// SMTP relay). A connector moves one message with its recipients and reports a reply
// per recipient; deciding what that means for the spool is the drain's job, not its.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/queue_id.hpp"
#include "common/reply.hpp"
#include "common/result.hpp"
#include "spool/spool.hpp"

namespace spoold::drain {

// Reads the body piece by piece (each call one short spool read transaction).
using BodyReader =
    std::function<Result<spool::BodyPiece>(std::uint32_t from_chunk, std::size_t max_bytes)>;

// A recipient's RFC 3461 parameters as the client gave them.
struct RecipientDsn {
    std::uint8_t notify = 0; // spool::NotifyBits; 0 = not given
    std::string orcpt;       // "addr-type;decoded"; empty = not given
};

struct DeliveryRequest {
    QueueId id;
    std::string mail_from;               // empty = null sender
    std::vector<std::string> recipients; // addresses, in the order replies come back
    std::uint64_t size = 0;
    bool smtputf8 = false;
    bool eight_bit_mime = false;
    // RFC 3461, passed on to an SMTP next hop that offers DSN: ENVID (decoded) and RET
    // ("FULL", "HDRS" or empty) of the message, NOTIFY and ORCPT per recipient (parallel
    // to `recipients`, or empty).
    std::string envid;
    std::string ret;
    std::vector<RecipientDsn> recipient_dsn;
    BodyReader read_body;
};

// How delivered recipients left us, which decides who reports success (RFC 3461 NOTIFY).
enum class Handoff : std::uint8_t {
    kFinal,    // into the mailbox (LMTP, Maildir): we are the final delivery agent
    kRelayed,  // to an SMTP next hop without DSN: we report "relayed", nobody reports later
    kPassedOn, // to an SMTP next hop with DSN, NOTIFY passed on: the next hop reports
};

struct DeliveryResult {
    // Set when the transaction as a whole failed (connect refused, timeout, 421,
    // a 4xx/5xx to MAIL FROM or DATA); then `per_recipient` may be empty and every
    // recipient takes `session_reply`.
    std::optional<Reply> session_reply;
    // True when the failure says the mailstore itself is in trouble (connection
    // failure, timeout, 421, 4.3.x, 4.4.x): it feeds the circuit breaker.
    bool mailstore_trouble = false;
    // Set with mailstore_trouble when the session broke off in the middle of the message
    // (timeout, reset, EOF): the store's trouble even where some recipients have replies.
    // Without it, trouble seen only in per-recipient replies is those mailboxes' (trouble.hpp).
    bool connection_lost = false;
    // Set with mailstore_trouble when the failure reaches every mailbox of the store, whoever
    // the recipient (a Maildir store whose filesystem is full or read-only): the store's
    // trouble although the replies are per recipient, as a dead shard's are not.
    bool store_wide = false;
    std::vector<Reply> per_recipient; // one per DeliveryRequest::recipients when no session_reply
    Handoff handoff = Handoff::kFinal;
};

class Mailstore {
public:
    virtual ~Mailstore() = default;
    virtual const std::string& name() const = 0;
    // Delivers one message. Never throws for peer or I/O trouble: it is in the result.
    virtual boost::asio::awaitable<DeliveryResult> deliver(DeliveryRequest request) = 0;
    // A cheap health check (connect + LHLO/EHLO + QUIT, or a writable Maildir root).
    virtual boost::asio::awaitable<Status> probe() = 0;
};

} // namespace spoold::drain
