// The contract between the SMTP session and the mail filters asked before we answer
// (milters such as rspamd or OpenDKIM): the session tells what happened at each stage and
// awaits one verdict, as it awaits the intake's commit. SMTP code speaks no filter
// protocol and does no filter I/O; milter/ implements these interfaces.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/queue_id.hpp"
#include "common/reply.hpp"
#include "smtp/header_section.hpp"

namespace spoold::smtp {

// The stages, in the order a session reaches them. Addresses are without angle brackets.
struct FilterConnect {
    std::string client_addr;
    std::uint16_t client_port = 0;
    std::string local_addr;
    std::uint16_t local_port = 0;
};
struct FilterHelo {
    std::string name;
    std::string tls_version; // empty when the session is plain
    std::string tls_cipher;
    int tls_bits = 0;
};
struct FilterMail {
    std::string address;
    std::vector<std::string> params; // ESMTP parameters as the client wrote them
};
struct FilterRcpt {
    std::string address;
    std::vector<std::string> params;
};
struct FilterData {
    QueueId id; // the message's queue id, known from DATA (or the first BDAT) on
};
struct FilterHeaders {
    std::vector<HeaderFieldView> fields; // then the end of the header section
};
struct FilterBody {
    std::string chunk;
};
struct FilterEnd {};
using FilterEvent = std::variant<FilterConnect, FilterHelo, FilterMail, FilterRcpt, FilterData,
                                 FilterHeaders, FilterBody, FilterEnd>;

enum class FilterAction {
    kContinue, // go on (the filters may still say something later)
    kAccept,   // no filter wants to see more of this message (or, at connect and HELO, of
               // this connection)
    kReject,   // refuse with `reply` (5xx)
    kTempFail, // refuse with `reply` (4xx): a filter said so, or one failed
    kDiscard,  // accept and throw away: this message (or, at connect and HELO, every one)
};

// A filter's change to a message, asked for at its end (the milter protocol's requests).
struct HeaderChange {
    enum class Kind { kAdd, kInsert, kChange };
    Kind kind = Kind::kAdd;
    std::uint32_t index = 0; // kInsert: position; kChange: occurrence (1-based)
    std::string name;
    std::string value; // kChange with an empty value deletes
};
struct EnvelopeChange {
    enum class Kind { kSetSender, kAddRecipient, kRemoveRecipient };
    Kind kind = Kind::kAddRecipient;
    std::string address;
};

struct FilterVerdict {
    FilterAction action = FilterAction::kContinue;
    // For kReject and kTempFail: the filter's own reply when it gave one; else the session
    // answers with its default for the stage.
    std::optional<Reply> reply;
    std::string filter; // the filter that decided, for the log
    std::string reason; // why (a failure, a filter's quarantine text), for the log
    // At the end of a message only (the rest of the filters' answers in between are
    // carried to the end by the implementation):
    std::vector<HeaderChange> headers;
    std::vector<EnvelopeChange> envelope;
    std::string quarantine; // not empty: keep the message held, with this reason
};

// The filters of one SMTP connection. `done` may run on any thread; it runs once.
class FilterSession {
public:
    virtual ~FilterSession() = default;
    virtual void ask(FilterEvent event, std::function<void(FilterVerdict)> done) = 0;
    // Whether asking `event` waits for a filter's reply; false when no filter answers
    // that stage (a filter may say so when it connects: rspamd answers only the end of
    // the message), so its verdict comes without a round trip and the session need not
    // send the client what it has settled first. Called between a verdict and the next
    // ask only.
    virtual bool awaits_reply(const FilterEvent& event) const = 0;
    // The message in progress is over without an end (RSET, a refusal, a new EHLO).
    virtual void abort() = 0;
    // The connection ends: filters are told and their connections closed. Nothing is
    // asked after this.
    virtual void close() = 0;
};

class Filters {
public:
    virtual ~Filters() = default;
    // A filter session for a new connection; null when no filters are configured.
    virtual std::unique_ptr<FilterSession> open() = 0;
};

} // namespace spoold::smtp
