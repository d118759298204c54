// Staging: the body of a large message written in pieces as it arrives, before its envelope
// exists, then enqueued with it, discarded, or collected as an orphan of a crashed session.
// Staged chunks are invisible to readers and counters until enqueued. Runs in the writer's
// transaction; the body chunks themselves are bodies.hpp's.
#pragma once

#include <optional>
#include <string_view>

#include "common/clock.hpp"
#include "common/result.hpp"
#include "spool/bodies.hpp"
#include "spool/lmdb/lmdb.hpp"
#include "spool/spool.hpp"
#include "spool/store.hpp"
#include "spool/tables.hpp"

namespace spoold::spool {

class Staging {
public:
    Staging(const Tables& tables, const Store& store, const Bodies& bodies, const Clock& clock)
        : t_(tables), store_(store), bodies_(bodies), clock_(clock) {}

    // Appends a piece to the body staged under `id` (a fresh body on the first piece).
    Status append(lmdb::WriteTxn& txn, QueueId id, std::string_view data) const;
    // Stores the message with the staged chunks followed by message.body as its body.
    // kNotFound when nothing is staged (discarded, or collected as an orphan).
    Status enqueue(lmdb::WriteTxn& txn, const NewMessage& msg) const;
    // Drops what is staged under `id`; nothing staged is not an error.
    Status discard(lmdb::WriteTxn& txn, QueueId id) const;
    // Discards every staging whose last append is older than `older_than`.
    Status collect(lmdb::WriteTxn& txn, UnixMillis older_than) const;

    // The highest id staged, for the queue id floor at open.
    Result<std::optional<QueueId>> newest(const lmdb::Txn& txn) const;

private:
    Tables t_;
    const Store& store_;
    const Bodies& bodies_;
    const Clock& clock_;
};

} // namespace spoold::spool
