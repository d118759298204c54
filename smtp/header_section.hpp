// The header section of a message being received: split off the content as it arrives,
// kept as fields, edited (Authentication-Results claiming our authserv-id removed, a
// filter's header changes applied) and written back in front of the body. Pure and
// bounded; no MIME, no RFC 2047, no validation beyond what splitting needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spoold::smtp {

// Most bytes of a header section kept in memory (Postfix's header_size_limit is 100 KiB).
// A longer one ends at the last whole field before the bound; the rest of the message is
// body for every purpose (filters see it as body, edits go before it).
inline constexpr std::size_t kMaxHeaderSection = 256 * 1024;

// A header field as filters see it: the name, and the value after the colon with the
// first space removed (Sendmail's and Postfix's convention) and line breaks as LF.
struct HeaderFieldView {
    std::string name;
    std::string value;
};

class HeaderSection {
public:
    // Our own field (the Received: header) at the top: part of the message, hidden from
    // filters and from their change indexes, counted by their insert indexes (as Postfix
    // does, for Sendmail compatibility).
    void add_own(std::string name, std::string raw);

    // Takes message bytes (CRLF line ends, in order) into the header section until it
    // ends; from the end on (the empty line, a line that is no header field, or the size
    // bound) the bytes are appended to `body` instead. Returns true once it has ended.
    bool feed(std::string_view in, std::string& body);
    // The message ended: a line still being read goes to the body.
    void finish(std::string& body);
    bool ended() const { return ended_; }

    // Removes every Authentication-Results: field whose authserv-id is `authserv_id`
    // (RFC 8601 5: a sender must not be able to forge our verdicts); returns how many.
    std::size_t remove_authentication_results(std::string_view authserv_id);

    // The client's fields, in order, as filters receive them.
    std::vector<HeaderFieldView> fields_for_filters() const;

    // Filter edits (the milter protocol's semantics). `value` goes after ": "; LF or CRLF
    // line breaks in it become CRLF followed by at least one blank, so no edit can start a
    // field or end the header section. Names that are no field names are refused (false).
    // Appends at the end of the header section.
    bool add(std::string_view name, std::string_view value);
    // Inserts before the field at `index` counting every field, our own included
    // (0 = the very top); past the end appends.
    bool insert(std::uint32_t index, std::string_view name, std::string_view value);
    // Replaces the `index`th (1-based) client field called `name`; an empty value
    // deletes it; without such a field the field is added (Sendmail's smfi_chgheader).
    bool change(std::uint32_t index, std::string_view name, std::string_view value);

    // The header section as stored: our fields and the client's, each with its CRLF,
    // without the empty line (that begins the body).
    std::string render() const;
    std::size_t size() const;

    // A field name as RFC 5322 3.6.8 allows: printable ASCII but ':', at least one.
    static bool valid_name(std::string_view name);

private:
    struct Field {
        std::string name;
        std::string raw; // "Name: value\r\n" with any continuation lines, as received
        bool own = false;
    };

    // A complete line (with its CRLF) at a line start of the header section.
    void take_line(std::string_view line, std::string& body);
    void end(std::string& body);
    static std::string make_raw(std::string_view name, std::string_view value);

    std::vector<Field> fields_;
    std::string partial_; // the line being read, up to its LF
    std::size_t bytes_ = 0;
    bool ended_ = false;
};

// The authserv-id an Authentication-Results value starts with (RFC 8601 2.2: a token or a
// quoted string after optional comments and folding), or empty when there is none.
std::string authserv_id_of(std::string_view value);

} // namespace spoold::smtp
