// One line per event, key=value, to stderr (journald picks it up from there).
// Callers write "event=name key=value ..."; values with spaces go through quote().
// Not a logging framework: no sinks, no rotation (that is journald's job).
#pragma once

#include <fmt/format.h>
#include <string>
#include <string_view>

namespace spoold::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_level(Level level);
Level level();
bool parse_level(std::string_view text, Level& out);
void write(Level level, std::string_view message);

// kPostfix (logging.format: postfix) shapes every line as Postfix's syslog lines,
// "TIME HOST spoold/SERVICE[PID]: TEXT", so pflogsumm and the like read them; the mail
// events then come from mail() in Postfix's words. `host` is our configured hostname.
enum class Format { kKeyValue, kPostfix };
void set_format(Format format, std::string_view host);
Format format();
bool parse_format(std::string_view text, Format& out);
// A mail event in Postfix's words ("QUEUEID: to=<...>, ..., status=sent (...)") from the
// Postfix program `service` stands for ("smtpd", "qmgr", "lmtp"); written only in the
// postfix format, where it takes the place of the key=value event line.
void mail(std::string_view service, std::string_view text);

// A value safe for key=value: quoted and escaped when it holds spaces, quotes,
// '=' or control bytes; unchanged otherwise.
std::string quote(std::string_view value);

template <typename... Args> void debug(fmt::format_string<Args...> f, Args&&... args) {
    if (level() <= Level::kDebug) {
        write(Level::kDebug, fmt::format(f, std::forward<Args>(args)...));
    }
}
template <typename... Args> void info(fmt::format_string<Args...> f, Args&&... args) {
    if (level() <= Level::kInfo) {
        write(Level::kInfo, fmt::format(f, std::forward<Args>(args)...));
    }
}
template <typename... Args> void warn(fmt::format_string<Args...> f, Args&&... args) {
    if (level() <= Level::kWarn) {
        write(Level::kWarn, fmt::format(f, std::forward<Args>(args)...));
    }
}
template <typename... Args> void error(fmt::format_string<Args...> f, Args&&... args) {
    write(Level::kError, fmt::format(f, std::forward<Args>(args)...));
}

} // namespace spoold::log
