// The milter protocol (Sendmail 8.14 and later, version 6) from the MTA's side, as bytes:
// a packet for each command we send, the filter's packets split out of a byte stream,
// its replies and option negotiation decoded into values. Sans-IO: no sockets, no
// timers, no policy (milter/client does the I/O, milter/chain decides).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/reply.hpp"
#include "common/result.hpp"

namespace spoold::milter {

inline constexpr std::uint32_t kProtocolVersion = 6;
// A body packet carries at most this many bytes (libmilter's MILTER_CHUNK_SIZE).
inline constexpr std::size_t kMaxBodyChunk = 65535;
// Packets from a filter larger than this are refused (libmilter's largest negotiable
// data size is 1 MiB; a header change is far smaller).
inline constexpr std::size_t kMaxPacket = (1U << 20U) + 1024;

// Commands, MTA to filter (SMFIC_*).
enum class Command : char {
    kAbort = 'A',
    kBody = 'B',
    kConnect = 'C',
    kMacro = 'D',
    kEndOfBody = 'E',
    kHelo = 'H',
    kHeader = 'L',
    kMail = 'M',
    kEndOfHeaders = 'N',
    kOptionNegotiation = 'O',
    kQuit = 'Q',
    kRcpt = 'R',
    kData = 'T',
};

// What the filter may do (SMFIF_*), offered by us and requested by it.
enum Actions : std::uint32_t {
    kAddHeaders = 0x1,
    kChangeBody = 0x2,
    kAddRecipient = 0x4,
    kDeleteRecipient = 0x8,
    kChangeHeaders = 0x10,
    kQuarantine = 0x20,
    kChangeFrom = 0x40,
    kAddRecipientWithParams = 0x80,
    kSetMacroList = 0x100,
};
// Everything but replacing the body (bodies are already in the spool when the filter
// could ask for that).
inline constexpr std::uint32_t kOfferedActions = kAddHeaders | kAddRecipient | kDeleteRecipient |
                                                 kChangeHeaders | kQuarantine | kChangeFrom |
                                                 kAddRecipientWithParams | kSetMacroList;

// Protocol steps the filter may skip or not answer (SMFIP_*).
enum Protocol : std::uint32_t {
    kNoConnect = 0x1,
    kNoHelo = 0x2,
    kNoMail = 0x4,
    kNoRcpt = 0x8,
    kNoBody = 0x10,
    kNoHeaders = 0x20,
    kNoEndOfHeaders = 0x40,
    kNoReplyHeader = 0x80,
    kNoUnknown = 0x100,
    kNoData = 0x200,
    kSkip = 0x400,
    kRejectedRecipients = 0x800,
    kNoReplyConnect = 0x1000,
    kNoReplyHelo = 0x2000,
    kNoReplyMail = 0x4000,
    kNoReplyRcpt = 0x8000,
    kNoReplyData = 0x10000,
    kNoReplyUnknown = 0x20000,
    kNoReplyEndOfHeaders = 0x40000,
    kNoReplyBody = 0x80000,
    kHeaderLeadingSpace = 0x100000,
};
// Every step may be skipped or left unanswered and the body skipped; rejected recipients
// are never shown to filters, and header values always travel without their leading
// space (Sendmail's default).
inline constexpr std::uint32_t kOfferedProtocol = 0x0FFFFF & ~kRejectedRecipients;

// The stages a filter may name macros for (SMFIM_*), in protocol order.
enum class MacroStage : std::uint32_t {
    kConnect = 0,
    kHelo = 1,
    kMail = 2,
    kRcpt = 3,
    kData = 4,
    kEndOfMessage = 5,
    kEndOfHeaders = 6,
};
inline constexpr std::size_t kMacroStages = 7;

using Macros = std::vector<std::pair<std::string, std::string>>;

// ---- encoding: one complete packet each ----

std::string encode_option_negotiation(std::uint32_t version, std::uint32_t actions,
                                      std::uint32_t protocol);
// Macros for the command `for_command`, sent just before it.
std::string encode_macros(Command for_command, const Macros& macros);
// `address` empty: an unknown family ('U'), as for a client we know no address of.
std::string encode_connect(std::string_view hostname, std::string_view address, std::uint16_t port);
std::string encode_helo(std::string_view name);
// `address` without angle brackets (they are added); `params` as the client wrote them.
std::string encode_mail(std::string_view address, const std::vector<std::string>& params);
std::string encode_rcpt(std::string_view address, const std::vector<std::string>& params);
std::string encode_header(std::string_view name, std::string_view value);
// Body bytes in packets of at most kMaxBodyChunk.
std::string encode_body(std::string_view bytes);
// Commands without data: kData, kEndOfHeaders, kEndOfBody, kAbort, kQuit.
std::string encode_command(Command command);

// ---- decoding the filter's byte stream ----

struct Packet {
    char code = 0;
    std::string data;
};

class PacketReader {
public:
    void feed(std::string_view bytes);
    // The next complete packet, an empty optional when more bytes are needed, or
    // kProtocol (length 0 or over kMaxPacket); after an error the reader stays failed.
    Result<std::optional<Packet>> next();

private:
    std::string buffer_;
    std::size_t pos_ = 0;
    std::optional<Error> failed_;
};

struct Negotiated {
    std::uint32_t version = 0;
    std::uint32_t actions = 0;  // what the filter wants to do
    std::uint32_t protocol = 0; // steps to skip or leave unanswered
    // Macros the filter asked for per stage (SMFIR_SETSYMLIST in the negotiation), space
    // separated as sent; empty: it did not ask.
    std::array<std::string, kMacroStages> macros;
};
// The filter's answer to our option negotiation (kProtocol when malformed).
Result<Negotiated> decode_negotiation(const Packet& packet);

// A filter's reply to a command.
struct Response {
    enum class Kind {
        kAccept,
        kContinue,
        kDiscard,
        kReject,
        kTempFail,
        kReplyCode,       // `reply`: reject or tempfail with this text (4xx or 5xx)
        kShutdown,        // the filter is shutting down: a 421
        kConnectionFail,  // fail the connection: a 421
        kSkip,            // no more body chunks, please
        kProgress,        // still working: keep waiting
        kAddHeader,       // `name`, `value`
        kInsertHeader,    // `index`, `name`, `value`
        kChangeHeader,    // `index`, `name`, `value` (empty: delete)
        kQuarantine,      // `text`: the reason
        kAddRecipient,    // `text`: the address; `params` with SMFIR_ADDRCPT_PAR
        kDeleteRecipient, // `text`
        kChangeFrom,      // `text`: the new sender; `params`
        kReplaceBody,     // never offered: a protocol error when it comes
    };
    Kind kind = Kind::kContinue;
    Reply reply;
    std::uint32_t index = 0;
    std::string name;
    std::string value;
    std::string text;
    std::string params;

    // The reply ends the wait for the command (the others are requests or progress).
    bool final() const;
};
// kProtocol for an unknown code or malformed data (a reply code that is not 4xx/5xx,
// strings without their NUL, short fields).
Result<Response> decode_response(const Packet& packet);

// "<a@b>" or "a@b" -> "a@b" (filters send addresses with or without the brackets).
std::string strip_brackets(std::string_view address);

} // namespace spoold::milter
