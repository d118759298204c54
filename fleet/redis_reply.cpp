#include "fleet/redis_reply.hpp"

#include <algorithm>
#include <charconv>
#include <hiredis/hiredis.h>

namespace spoold::fleet {
namespace {

RedisReply convert(const redisReply& r) {
    RedisReply out;
    switch (r.type) {
    case REDIS_REPLY_STRING: out.type = RedisReply::Type::kString; break;
    case REDIS_REPLY_STATUS: out.type = RedisReply::Type::kStatus; break;
    case REDIS_REPLY_ERROR: out.type = RedisReply::Type::kError; break;
    case REDIS_REPLY_INTEGER:
        out.type = RedisReply::Type::kInteger;
        out.integer = r.integer;
        return out;
    case REDIS_REPLY_ARRAY:
        out.type = RedisReply::Type::kArray;
        out.elements.reserve(r.elements);
        for (std::size_t i = 0; i < r.elements; ++i) {
            out.elements.push_back(convert(*r.element[i]));
        }
        return out;
    default: out.type = RedisReply::Type::kNil; return out;
    }
    out.str.assign(r.str, r.len);
    return out;
}

} // namespace

std::optional<std::int64_t> RedisReply::as_int() const {
    if (type == Type::kInteger) {
        return integer;
    }
    if (type != Type::kString && type != Type::kStatus) {
        return std::nullopt;
    }
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(str.data(), str.data() + str.size(), v);
    if (ec != std::errc() || end != str.data() + str.size()) {
        return std::nullopt;
    }
    return v;
}

std::uint32_t RedisReply::as_count() const {
    const auto v = as_int();
    return v && *v > 0 ? static_cast<std::uint32_t>(std::min<std::int64_t>(*v, UINT32_MAX)) : 0;
}

std::string_view RedisReply::text() const {
    return type == Type::kString || type == Type::kStatus ? std::string_view(str)
                                                          : std::string_view();
}

const RedisReply& RedisReply::at(std::size_t i) const {
    static const RedisReply nil;
    return type == Type::kArray && i < elements.size() ? elements[i] : nil;
}

std::string encode_command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    argv.reserve(args.size());
    lengths.reserve(args.size());
    for (const auto& a : args) {
        argv.push_back(a.data());
        lengths.push_back(a.size());
    }
    char* wire = nullptr;
    const int n =
        redisFormatCommandArgv(&wire, static_cast<int>(args.size()), argv.data(), lengths.data());
    if (n < 0 || wire == nullptr) {
        throw std::bad_alloc();
    }
    std::string out(wire, static_cast<std::size_t>(n));
    redisFreeCommand(wire);
    return out;
}

struct ReplyDecoder::Reader {
    redisReader* r = redisReaderCreate();
    ~Reader() {
        if (r != nullptr) {
            redisReaderFree(r);
        }
    }
};

ReplyDecoder::ReplyDecoder() : reader_(std::make_unique<Reader>()) {
    if (reader_->r == nullptr) {
        throw std::bad_alloc();
    }
}

ReplyDecoder::~ReplyDecoder() = default;

Status ReplyDecoder::feed(std::string_view bytes) {
    if (redisReaderFeed(reader_->r, bytes.data(), bytes.size()) != REDIS_OK) {
        return fail(ErrorKind::kProtocol, std::string("redis reply: ") + reader_->r->errstr);
    }
    return {};
}

Result<std::optional<RedisReply>> ReplyDecoder::next() {
    void* raw = nullptr;
    if (redisReaderGetReply(reader_->r, &raw) != REDIS_OK) {
        return fail(ErrorKind::kProtocol, std::string("redis reply: ") + reader_->r->errstr);
    }
    if (raw == nullptr) {
        return std::optional<RedisReply>();
    }
    auto* reply = static_cast<redisReply*>(raw);
    RedisReply out = convert(*reply);
    freeReplyObject(reply);
    return std::optional<RedisReply>(std::move(out));
}

} // namespace spoold::fleet
