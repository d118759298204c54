// libFuzzer target: the spool's envelope record decoder on arbitrary bytes (a damaged or
// hostile data.mdb) and encode/decode round trips. Input: the record bytes as stored;
// when the first byte is 0xFF the rest instead describes an Envelope to encode.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "spool/record.hpp"
#include "spool/spool.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace spoold;
using spoold::fuzz::check;
using namespace spoold::spool;

namespace {

constexpr std::uint8_t kBuildMarker = 0xFF;
constexpr std::size_t kMaxBuiltRecipients = 64;
constexpr std::size_t kMaxBuiltString = 300;

// decode never crashes; what it accepts encodes back to the same bytes, and the facts read
// from the header alone agree with the facts derived from the whole envelope.
void check_decode(std::string_view bytes) {
    const auto facts = record::decode_facts(bytes);
    const auto env = record::decode_envelope(bytes);
    if (!env) {
        check(env.error().kind == ErrorKind::kCorrupt,
              "decode failed with another kind than kCorrupt");
        return;
    }
    check(facts.has_value(), "envelope decodes but its header does not");
    check(record::facts_of(*env, facts->body_ref) == *facts,
          "header facts differ from the envelope's");
    check(record::encode_envelope(*env, facts->body_ref) == bytes, "encode(decode(x)) != x");
}

Envelope build(FuzzedDataProvider& in) {
    Envelope env;
    env.id = QueueId{in.ConsumeIntegral<std::uint64_t>()};
    env.arrival_ms = in.ConsumeIntegral<std::int64_t>();
    env.klass = in.ConsumeIntegralInRange<ClassId>(0, kMaxClasses - 1);
    env.size = in.ConsumeIntegral<std::uint64_t>();
    env.held = in.ConsumeBool();
    env.expires_ms = in.ConsumeIntegral<std::int64_t>();
    env.flags = in.ConsumeIntegral<std::uint32_t>();
    env.mail_from = in.ConsumeRandomLengthString(kMaxBuiltString);
    env.mail_params = in.ConsumeRandomLengthString(kMaxBuiltString);
    env.ret = in.ConsumeRandomLengthString(kMaxBuiltString);
    env.envid = in.ConsumeRandomLengthString(kMaxBuiltString);
    env.client_addr = in.ConsumeRandomLengthString(kMaxBuiltString);
    env.helo = in.ConsumeRandomLengthString(kMaxBuiltString);
    env.tls = in.ConsumeRandomLengthString(kMaxBuiltString);
    const std::size_t n = in.ConsumeIntegralInRange<std::size_t>(0, kMaxBuiltRecipients);
    for (std::size_t i = 0; i < n && in.remaining_bytes() > 0; ++i) {
        Recipient r;
        r.address = in.ConsumeRandomLengthString(kMaxBuiltString);
        r.orcpt = in.ConsumeRandomLengthString(kMaxBuiltString);
        r.notify = in.ConsumeIntegral<std::uint8_t>();
        r.state = static_cast<RcptState>(in.ConsumeIntegralInRange<std::uint8_t>(
            0, static_cast<std::uint8_t>(RcptState::kExpired)));
        r.next_attempt_ms = in.ConsumeIntegral<std::int64_t>();
        r.attempts = in.ConsumeIntegral<std::uint32_t>();
        r.last_response = in.ConsumeRandomLengthString(kMaxBuiltString);
        env.recipients.push_back(std::move(r));
    }
    return env;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    if (size > 0 && data[0] == kBuildMarker) {
        FuzzedDataProvider in(data + 1, size - 1);
        const Envelope env = build(in);
        const std::uint64_t body_ref = in.ConsumeIntegral<std::uint64_t>();
        const std::string encoded = record::encode_envelope(env, body_ref);
        const auto decoded = record::decode_envelope(encoded);
        check(decoded.has_value(), "an encoded envelope does not decode");
        check(*decoded == env, "decode(encode(e)) != e");
        const auto facts = record::decode_facts(encoded);
        check(facts && *facts == record::facts_of(env, body_ref), "facts of an encoded envelope");
        check_decode(encoded);
        // Every proper prefix is truncated, hence corrupt.
        const std::size_t cut = in.ConsumeIntegralInRange<std::size_t>(0, encoded.size() - 1);
        check(!record::decode_envelope(std::string_view(encoded).substr(0, cut)),
              "a truncated record decodes");
        return 0;
    }
    check_decode(bytes);
    return 0;
}
