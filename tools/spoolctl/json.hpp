// A minimal JSON writer for spoolctl's --json output (one object per line). Writes
// only; spoolctl never parses JSON. Strings are escaped per RFC 8259, and bytes that are
// not valid UTF-8 become U+FFFD so that every line parses in any consumer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace spoold::spoolctl {

// `text` as a JSON string literal, quotes included.
std::string json_string(std::string_view text);

// Builds one object or array. Call begin/end in matching pairs; commas are handled.
class JsonWriter {
public:
    JsonWriter& begin_object();
    JsonWriter& end_object();
    JsonWriter& begin_array();
    JsonWriter& end_array();
    // The key of the next value inside an object.
    JsonWriter& key(std::string_view name);
    JsonWriter& value(std::string_view text);
    JsonWriter& value(const char* text) { return value(std::string_view(text)); }
    JsonWriter& value(std::int64_t number);
    JsonWriter& value(std::uint64_t number);
    JsonWriter& value(std::uint32_t number) { return value(static_cast<std::uint64_t>(number)); }
    JsonWriter& value(int number) { return value(static_cast<std::int64_t>(number)); }
    JsonWriter& value(double number);
    JsonWriter& value(bool flag);
    JsonWriter& null();

    const std::string& str() const { return out_; }

private:
    void separate();

    std::string out_;
    bool need_comma_ = false;
    bool after_key_ = false;
};

} // namespace spoold::spoolctl
