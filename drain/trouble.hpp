// Whose trouble a delivery result shows: the store's (its session failed: connect, timeout,
// 421, a lost connection, the transaction refused as trouble; or its storage fails everyone)
// or only some mailboxes' (per-recipient 4.3.x/4.4.x/451 while the session worked: a dead
// shard, one broken mailbox). Pure functions of the result; health.cpp acts on either.
#pragma once

#include <cstdint>

#include "common/reply.hpp"
#include "drain/mailstore.hpp"

namespace spoold::drain {

// True when a reply says the mailstore (or the part of it behind this recipient) is in
// trouble: 421; a 4.3.x "mail system" or 4.4.x "network/routing" status; 451 "local error"
// unless 4.7.x policy. Not one recipient's own state (452 4.2.2 over quota, 550 unknown).
bool is_trouble(const Reply& reply);

enum class Verdict : std::uint8_t {
    kHealthy,   // the store answered every recipient, none with trouble
    kStore,     // the session or the whole storage failed: the store's breaker counts it
    kMailboxes, // only some recipients' replies say trouble: their mailboxes back off
};

struct Weighed {
    Verdict verdict = Verdict::kHealthy;
    std::uint32_t answered = 0; // recipients with a reply that is no trouble
    std::uint32_t troubled = 0; // recipients whose own reply says trouble (kMailboxes)
};

Weighed classify(const DeliveryResult& result);

} // namespace spoold::drain
