// The one JSON writer: /status, the fleet view and spoolctl's --json output. Strings are
// escaped per RFC 8259; bytes that are not valid UTF-8 (overlong forms, surrogates, code
// points above U+10FFFF included) become U+FFFD, so every document parses in any consumer
// whatever a client put in an address. Writes only: spoold never parses JSON.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace spoold::json {

// Appends `text` as a JSON string literal, quotes included. With `script_safe`, '<' is
// written as \u003c too, so the document can be inlined in an HTML <script> block.
void append_string(std::string& out, std::string_view text, bool script_safe = false);

// `text` as a JSON string literal, quotes included.
std::string quoted(std::string_view text, bool script_safe = false);

// Builds one document, compact (no blanks). Call begin/end in matching pairs; commas are
// placed by the writer. Numbers that are not finite are written as null.
class Writer {
public:
    // `script_safe`: every string as append_string(..., true) writes it.
    explicit Writer(bool script_safe = false) : script_safe_(script_safe) {}

    Writer& begin_object();
    Writer& end_object();
    Writer& begin_array();
    Writer& end_array();
    // The key of the next value inside an object.
    Writer& key(std::string_view name);
    Writer& value(std::string_view text);
    Writer& value(const char* text) { return value(std::string_view(text)); }
    Writer& value(std::int64_t number);
    Writer& value(std::uint64_t number);
    Writer& value(std::uint32_t number) { return value(static_cast<std::uint64_t>(number)); }
    Writer& value(int number) { return value(static_cast<std::int64_t>(number)); }
    Writer& value(double number);
    Writer& value(bool flag);
    Writer& null();
    // A value that is JSON already (a document another writer made), written as it is.
    Writer& raw(std::string_view json);

    const std::string& str() const { return out_; }
    std::string take() { return std::move(out_); }

private:
    void separate();

    std::string out_;
    bool script_safe_ = false;
    bool need_comma_ = false;
    bool after_key_ = false;
};

} // namespace spoold::json
