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

struct DeliveryRequest {
    QueueId id;
    std::string mail_from;               // empty = null sender
    std::vector<std::string> recipients; // addresses, in the order replies come back
    std::uint64_t size = 0;
    bool smtputf8 = false;
    bool eight_bit_mime = false;
    BodyReader read_body;
};

struct DeliveryResult {
    // Set when the transaction as a whole failed (connect refused, timeout, 421,
    // a 4xx/5xx to MAIL FROM or DATA); then `per_recipient` may be empty and every
    // recipient takes `session_reply`.
    std::optional<Reply> session_reply;
    // True when the failure says the mailstore itself is in trouble (connection
    // failure, timeout, 421, 4.3.x, 4.4.x): it feeds the circuit breaker.
    bool mailstore_trouble = false;
    std::vector<Reply> per_recipient; // one per DeliveryRequest::recipients when no session_reply
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
