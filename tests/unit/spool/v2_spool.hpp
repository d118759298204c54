// A spool exactly as format 2 (spoold before rcpt_gone: a removal deleted its recipient-index
// entries at once) wrote it, for the upgrade tests: format 1's tables and records (v1_spool.hpp)
// plus the recipient, ready-by-domain and DSN indexes, with meta format_version 2. A frozen
// copy of that format's key layout, not the spool's own code.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "spool/lmdb/lmdb.hpp"
#include "spool/spool.hpp"
#include "v1_spool.hpp"

namespace spoold::spool::test::v2 {

inline std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) {
        return c < 0x80 ? static_cast<char>(std::tolower(c)) : static_cast<char>(c);
    });
    return s;
}

inline std::string domain_of(const std::string& address) {
    const auto at = address.rfind('@');
    return at == std::string::npos ? std::string() : address.substr(at + 1);
}

// Format 2's recipient key: domain | 0 | local part | 0 | id, lower-cased.
inline std::string rcpt_key(const std::string& address, QueueId id) {
    const auto at = address.rfind('@');
    const std::string local = at == std::string::npos ? address : address.substr(0, at);
    return domain_of(address) + std::string(1, '\0') + local + std::string(1, '\0') +
           v1::be(id.value, 8);
}

// Writes a format 2 spool at `path` holding `messages`, as that format's writer left it.
inline void write_spool(const std::string& path, const std::vector<NewMessage>& messages) {
    v1::write_spool(path, messages); // format 1's tables, records, bodies, indexes, counters
    lmdb::EnvOptions eo;
    eo.path = path;
    eo.map_size = 64ULL << 20U;
    auto env = lmdb::Env::open(eo);
    REQUIRE(env.has_value());
    auto meta = (*env)->table("meta", false);
    auto rcpt = (*env)->table("rcpt", true);
    auto ready_domain = (*env)->table("ready_domain", true);
    auto dsn = (*env)->table("dsn", true);
    REQUIRE((meta && rcpt && ready_domain && dsn));
    auto txn = (*env)->begin_write();
    REQUIRE(txn.has_value());
    for (const NewMessage& m : messages) {
        const Envelope& e = m.envelope;
        const bool ready = message_state(e) == MsgState::kReady;
        const bool is_dsn = (e.flags & kFlagDsn) != 0;
        for (const Recipient& r : e.recipients) {
            const std::string a = lower(r.address);
            REQUIRE(txn->put(*rcpt, rcpt_key(a, e.id), {}));
            if (ready && r.state == RcptState::kQueued) {
                // Our DSNs' key, record::kDsnDomain: written "\x01dsn", which C++ reads as
                // the escape \x01d and "sn", so the bytes on disk are 0x1D 's' 'n'.
                const std::string domain = is_dsn ? std::string{'\x1d', 's', 'n'} : domain_of(a);
                REQUIRE(txn->put(*ready_domain,
                                 std::string(1, static_cast<char>(e.klass)) + domain +
                                     std::string(1, '\0') + v1::be(e.id.value, 8),
                                 {}));
            }
        }
        if (is_dsn) {
            REQUIRE(txn->put(*dsn, v1::be(e.id.value, 8), {}));
        }
    }
    REQUIRE(txn->put(*meta, "format_version", "2"));
    REQUIRE(txn->commit());
}

} // namespace spoold::spool::test::v2
