#include <doctest/doctest.h>

#include "spool/record.hpp"

namespace spoold::spool {
namespace {

Envelope sample() {
    Envelope e;
    e.id = QueueId{0x0123456789ABCDEFULL};
    e.arrival_ms = 1'700'000'000'123;
    e.klass = 3;
    e.size = 12345;
    e.mail_from = "a@b.example";
    e.mail_params = "SIZE=12345 BODY=8BITMIME";
    e.ret = "HDRS";
    e.envid = "env+id";
    e.client_addr = "2001:db8::1";
    e.helo = "mx.b.example";
    e.tls = "TLSv1.3 cipher=TLS_AES_256_GCM_SHA384";
    e.expires_ms = 1'800'000'000'000;
    e.flags = kFlag8BitMime | kFlagSmtpUtf8;
    Recipient r1;
    r1.address = "x@y.example";
    r1.orcpt = "rfc822;x@y.example";
    r1.notify = kNotifyFailure | kNotifyDelay;
    r1.state = RcptState::kDeferred;
    r1.next_attempt_ms = 1'700'000'600'000;
    r1.attempts = 2;
    r1.last_response = "451 4.3.0 try later";
    Recipient r2;
    r2.address = std::string("z\0z@y.example", 13); // bytes, not C strings
    r2.state = RcptState::kDelivered;
    r2.last_response = "250 2.0.0 ok";
    e.recipients = {r1, r2};
    return e;
}

} // namespace

TEST_CASE("an envelope survives an encode and decode round trip unchanged") {
    const Envelope e = sample();
    const std::string bytes = record::encode_envelope(e);
    CHECK(static_cast<std::uint8_t>(bytes[0]) == 1); // no hold reason: version 1
    auto back = record::decode_envelope(bytes);
    REQUIRE(back.has_value());
    CHECK(*back == e);

    Envelope quarantined = sample();
    quarantined.held = true;
    quarantined.hold_reason = "rspamd: Gtube pattern";
    const std::string v2 = record::encode_envelope(quarantined);
    CHECK(static_cast<std::uint8_t>(v2[0]) == 2);
    CHECK(v2.substr(0, record::kHeaderSize) != bytes.substr(0, record::kHeaderSize)); // held
    auto back_v2 = record::decode_envelope(v2);
    REQUIRE(back_v2.has_value());
    CHECK(*back_v2 == quarantined);
    // Every truncation of a version 2 record is corrupt too, as is one byte more.
    for (std::size_t n = 0; n < v2.size(); ++n) {
        CHECK_FALSE(record::decode_envelope(std::string_view(v2).substr(0, n)).has_value());
    }
    CHECK_FALSE(record::decode_envelope(v2 + "x").has_value());
    // A version 1 record with the v2 field appended is not version 1.
    std::string forged = bytes + record::be32(1) + "x";
    CHECK_FALSE(record::decode_envelope(forged).has_value());
    // Version 2 with an empty reason is never written (that envelope is version 1): damage,
    // which would otherwise re-encode to other bytes (found by fuzz_record).
    std::string reasonless = bytes + record::be32(0);
    reasonless[0] = 2;
    auto reasonless_back = record::decode_envelope(reasonless);
    REQUIRE_FALSE(reasonless_back.has_value());
    CHECK(reasonless_back.error().kind == ErrorKind::kCorrupt);

    Envelope empty;
    empty.id = QueueId{1};
    auto back_empty = record::decode_envelope(record::encode_envelope(empty));
    REQUIRE(back_empty.has_value());
    CHECK(*back_empty == empty);
}

TEST_CASE("the encoding is big-endian and fixed, not a struct image") {
    const std::string bytes = record::encode_envelope(sample());
    CHECK(bytes.substr(1, 8) == std::string("\x01\x23\x45\x67\x89\xAB\xCD\xEF", 8));
    CHECK(record::read_be64(bytes.substr(1)) == 0x0123456789ABCDEFULL);
}

TEST_CASE("every truncation of a record is rejected as corrupt") {
    const std::string bytes = record::encode_envelope(sample());
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        auto r = record::decode_envelope(std::string_view(bytes).substr(0, n));
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().kind == ErrorKind::kCorrupt);
    }
    auto longer = record::decode_envelope(bytes + "x");
    REQUIRE_FALSE(longer.has_value());
    CHECK(longer.error().kind == ErrorKind::kCorrupt);
}

TEST_CASE("a record of a newer version or with out-of-range fields is corrupt") {
    std::string bytes = record::encode_envelope(sample());
    bytes[0] = static_cast<char>(record::kEnvelopeVersion + 1);
    auto newer = record::decode_envelope(bytes);
    REQUIRE_FALSE(newer.has_value());
    CHECK(newer.error().kind == ErrorKind::kCorrupt);
    CHECK(newer.error().message.find("newer") != std::string::npos);

    bytes = record::encode_envelope(sample());
    bytes[0] = 0;
    CHECK_FALSE(record::decode_envelope(bytes).has_value());

    bytes = record::encode_envelope(sample());
    bytes[17] = static_cast<char>(kMaxClasses); // class byte after version, id, arrival
    CHECK_FALSE(record::decode_envelope(bytes).has_value());

    // A recipient count far beyond the record must not allocate, just fail.
    Envelope e = sample();
    e.recipients.clear();
    bytes = record::encode_envelope(e);
    bytes.replace(bytes.size() - 4, 4, record::be32(0xFFFFFFFFU));
    CHECK_FALSE(record::decode_envelope(bytes).has_value());
}

TEST_CASE("the fixed header alone gives the index facts of a damaged record") {
    const Envelope e = sample();
    const std::string bytes = record::encode_envelope(e, 77);
    auto facts = record::decode_facts(bytes.substr(0, record::kHeaderSize));
    REQUIRE(facts.has_value());
    CHECK(*facts == record::facts_of(e, 77));
    CHECK(facts->body_ref == 77);
    CHECK(facts->state == MsgState::kDeferred);
    CHECK(facts->due == 1'700'000'600'000);
    CHECK_FALSE(record::decode_facts(bytes.substr(0, record::kHeaderSize - 1)).has_value());
}

TEST_CASE("index keys sort by class, then time, then id") {
    CHECK(record::ready_key(1, QueueId{5}) < record::ready_key(1, QueueId{6}));
    CHECK(record::ready_key(1, QueueId{~0ULL}) < record::ready_key(2, QueueId{0}));
    CHECK(record::time_key(100, QueueId{9}) < record::time_key(101, QueueId{1}));
    CHECK(record::time_key(100, QueueId{1}) < record::time_key(100, QueueId{2}));
    CHECK(record::body_key(1, 255) < record::body_key(1, 256));
    CHECK(record::body_key(1, 0xFFFFFFFFU) < record::body_key(2, 0));
    CHECK(record::id_at(record::time_key(7, QueueId{42}), 8) == QueueId{42});
}

} // namespace spoold::spool
