#include "common/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <unistd.h>

#include "common/date.hpp"

namespace spoold::log {
namespace {

std::atomic<Level> g_level{Level::kInfo};
std::atomic<Format> g_format{Format::kKeyValue};
std::mutex g_mutex;
std::string g_host = "localhost"; // guarded by g_mutex

std::string_view level_name(Level l) {
    switch (l) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
    }
    return "info";
}

} // namespace

void set_level(Level l) { g_level = l; }
Level level() { return g_level.load(std::memory_order_relaxed); }

bool parse_level(std::string_view text, Level& out) {
    for (const Level l : {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
        if (text == level_name(l)) {
            out = l;
            return true;
        }
    }
    return false;
}

void set_format(Format f, std::string_view host) {
    const std::lock_guard lock(g_mutex);
    g_format = f;
    g_host = host.empty() ? "localhost" : std::string(host);
}
Format format() { return g_format.load(std::memory_order_relaxed); }

bool parse_format(std::string_view text, Format& out) {
    if (text == "keyvalue") {
        out = Format::kKeyValue;
        return true;
    }
    if (text == "postfix") {
        out = Format::kPostfix;
        return true;
    }
    return false;
}

namespace {

// RFC 3339 in UTC with milliseconds: both formats start with it (pflogsumm reads it).
std::string timestamp() {
    const auto now = std::chrono::system_clock::now();
    return date::iso8601(
        std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count());
}

// Under the lock: one line, whole, in the current format.
void emit(std::string_view service, std::string_view prefix, std::string_view message, Level l) {
    const std::lock_guard lock(g_mutex);
    const std::string line =
        g_format == Format::kPostfix
            ? fmt::format("{} {} spoold/{}[{}]: {}{}\n", timestamp(), g_host, service, ::getpid(),
                          prefix, message)
            : fmt::format("{} level={} {}\n", timestamp(), level_name(l), message);
    std::fwrite(line.data(), 1, line.size(), stderr);
    std::fflush(stderr);
}

} // namespace

void write(Level l, std::string_view message) {
    // Postfix marks only trouble ("warning:", "error:"); pflogsumm counts the warnings.
    const std::string_view prefix = l == Level::kWarn    ? "warning: "
                                    : l == Level::kError ? "error: "
                                                         : "";
    emit("daemon", prefix, message, l);
}

void mail(std::string_view service, std::string_view text) {
    if (format() == Format::kPostfix && level() <= Level::kInfo) {
        emit(service, "", text, Level::kInfo);
    }
}

std::string quote(std::string_view value) {
    bool needs = value.empty();
    for (const char c : value) {
        const auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || c == '"' || c == '=' || c == '\\' || u == 0x7f) {
            needs = true;
            break;
        }
    }
    if (!needs) {
        return std::string(value);
    }
    std::string out = "\"";
    for (const char c : value) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20 || u == 0x7f) {
            out += fmt::format("\\x{:02x}", u);
        } else {
            out += c;
        }
    }
    out += '"';
    return out;
}

} // namespace spoold::log
