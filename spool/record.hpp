// The persisted byte formats of the spool: the versioned envelope record and the
// big-endian keys of every table. Pure functions, no LMDB; nothing here is ever a
// memcpy of a struct, so the format does not depend on the compiler or the CPU.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "spool/spool.hpp"

namespace spoold::spool::record {

// Version 1 layout, all integers big-endian, strings as u32 length + bytes:
//   u8 version | u64 id | i64 arrival | u8 class | u8 indexed state | i64 indexed due |
//   i64 expires | u32 flags | u8 held | u64 size | u64 body ref |         (the fixed header)
//   str mail_from, mail_params, ret, envid, client_addr, helo, tls | u32 n |
//   n x (str address | str orcpt | u8 notify | u8 state | i64 next_attempt | u32 attempts |
//        str last_response)
// Version 2 appends: str hold_reason. A record is written as version 2 only when it has a
// hold reason, so a spool whose messages have none stays readable by version-1 readers.
// The header repeats what the indexes and counters were derived from, so a record whose
// tail is damaged can still be taken out of the indexes exactly when it is quarantined.
// The body ref is the writer-assigned key of the body chunks (not the queue id): refs grow
// in commit order, so body chunks are always appended at the end of the body table and
// its pages fill completely (see "Spool layout" in ARCHITECTURE.md).
inline constexpr std::uint8_t kEnvelopeVersion = 2; // the newest understood
inline constexpr std::size_t kHeaderSize = 1 + 8 + 8 + 1 + 1 + 8 + 8 + 4 + 1 + 8 + 8;

std::string encode_envelope(const Envelope& env, std::uint64_t body_ref = 0);
// kCorrupt for truncated data, trailing bytes, out-of-range enums or a newer version.
Result<Envelope> decode_envelope(std::string_view bytes);

// What the indexes and counters know about a stored message, from the fixed header only.
struct IndexFacts {
    QueueId id;
    ClassId klass = 0;
    MsgState state = MsgState::kReady;
    UnixMillis due = 0;     // the deferred-index time, meaningful when state is kDeferred
    UnixMillis expires = 0; // 0 or the expiry-index time
    bool in_expiry = false; // expires != 0 and not already acted on
    std::uint64_t size = 0;
    std::uint64_t body_ref = 0; // key prefix of the body chunks
    bool dsn = false;           // a DSN we generated (kFlagDsn)

    friend bool operator==(const IndexFacts&, const IndexFacts&) = default;
};
IndexFacts facts_of(const Envelope& env, std::uint64_t body_ref = 0);
Result<IndexFacts> decode_facts(std::string_view bytes);

// What the recipient indexes know about a message. It comes from the recipients, which the
// fixed header does not hold, so only a record that decodes whole has these facts.
struct RecipientFacts {
    // Every recipient's address (whatever its state), lower-cased, sorted, distinct.
    std::vector<std::string> addresses;
    // For a ready message, the domains of its queued recipients (lower-cased, sorted,
    // distinct; "" for an address without one), or for our DSN kDsnDomain (they all go out
    // through the smarthost, whatever their recipient's domain); empty otherwise.
    std::vector<std::string> ready_domains;

    friend bool operator==(const RecipientFacts&, const RecipientFacts&) = default;
};
RecipientFacts recipient_facts_of(const Envelope& env);
// The ready-by-domain key of our DSNs: not a domain (no domain holds a control character).
inline constexpr std::string_view kDsnDomain = "\x01dsn";

// ---- keys ----
std::string be64(std::uint64_t v);
std::string be32(std::uint32_t v);
std::uint64_t read_be64(std::string_view s); // s.size() >= 8
std::uint32_t read_be32(std::string_view s); // s.size() >= 4

std::string msg_key(QueueId id);                                   // id
std::string body_key(std::uint64_t body_ref, std::uint32_t chunk); // body ref | chunk
std::string ready_key(ClassId klass, QueueId id);                  // class | id
std::string time_key(UnixMillis at, QueueId id);                   // time | id (deferred, expiry)
std::string counter_key(ClassId klass, MsgState state);            // class | state
// The recipient index: domain | 0 | local part | 0 | id, from a lower-cased address, so one
// mailbox's mail is one run of keys in id order and its "+tag" forms follow it.
std::string rcpt_key(std::string_view address, QueueId id);
// The start of every key of `address` (lower-cased): domain | 0 | local part | 0.
std::string rcpt_prefix(std::string_view address);
// The start of every key of the address's "+tag" forms: domain | 0 | local part | delimiter.
std::string rcpt_tag_prefix(std::string_view address, char delimiter);
// The ready-by-domain index: class | domain | 0 | id.
std::string ready_domain_key(ClassId klass, std::string_view domain, QueueId id);
// The domain part of an address ("" when it has none).
std::string_view domain_of(std::string_view address);
// rcpt_gone's value (id -> the recipient-index keys a removed message left for the sweep):
// each key as u16 big-endian length | key. A key is an address and an id: under 64 KiB.
void append_key_list(std::string& list, std::string_view key);
// The keys of such a list, appended to `out`; false (and the keys before it kept) when the list
// is malformed.
bool read_key_list(std::string_view list, std::vector<std::string>& out);
// Ids are stored as big-endian u64 at `offset` of an index key.
QueueId id_at(std::string_view key, std::size_t offset);
// Every index key ends in the id (key.size() >= 8).
QueueId id_at_end(std::string_view key);

} // namespace spoold::spool::record
