// A Redis reply as a plain value, and the decoder that turns protocol bytes into replies
// (hiredis's redisReader does the parsing; this file owns the results). No I/O here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace spoold::fleet {

struct RedisReply {
    enum class Type { kNil, kString, kStatus, kError, kInteger, kArray };
    Type type = Type::kNil;
    std::string str; // kString, kStatus, kError
    std::int64_t integer = 0;
    std::vector<RedisReply> elements;

    bool is_error() const { return type == Type::kError; }
    // An integer reply, or a string of decimal digits (Lua returns numbers either way).
    std::optional<std::int64_t> as_int() const;
    // as_int() clamped to [0, UINT32_MAX]; 0 when not a number.
    std::uint32_t as_count() const;
    // A string or status reply's text; empty for anything else.
    std::string_view text() const;
    // The i-th element of an array reply, or a nil reply.
    const RedisReply& at(std::size_t i) const;
};

// One command in the protocol's wire form (RESP array of bulk strings).
std::string encode_command(const std::vector<std::string>& args);

// Feeds bytes in, takes whole replies out. A protocol error is final: the connection must
// be closed (kProtocol).
class ReplyDecoder {
public:
    ReplyDecoder();
    ~ReplyDecoder();
    ReplyDecoder(const ReplyDecoder&) = delete;
    ReplyDecoder& operator=(const ReplyDecoder&) = delete;

    Status feed(std::string_view bytes);
    // The next complete reply, nullopt when more bytes are needed.
    Result<std::optional<RedisReply>> next();

private:
    struct Reader;
    std::unique_ptr<Reader> reader_;
};

} // namespace spoold::fleet
