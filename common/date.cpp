#include "common/date.hpp"

#include <array>
#include <ctime>
#include <fmt/format.h>
#include <string_view>

namespace spoold::date {
namespace {

constexpr UnixMillis kMsPerSecond = 1000;
constexpr int kTmYearBase = 1900;

constexpr std::array<std::string_view, 7> kDays{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 12> kMonths{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

std::tm utc_tm(UnixMillis ms) {
    const auto secs = static_cast<std::time_t>(ms / kMsPerSecond);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    return tm;
}

std::string_view day_name(const std::tm& tm) {
    return kDays.at(static_cast<std::size_t>(tm.tm_wday));
}
std::string_view month_name(const std::tm& tm) {
    return kMonths.at(static_cast<std::size_t>(tm.tm_mon));
}

} // namespace

std::string rfc5322(UnixMillis ms) {
    const std::tm tm = utc_tm(ms);
    return fmt::format("{}, {} {} {} {:02}:{:02}:{:02} +0000", day_name(tm), tm.tm_mday,
                       month_name(tm), tm.tm_year + kTmYearBase, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::string asctime(UnixMillis ms) {
    const std::tm tm = utc_tm(ms);
    return fmt::format("{} {} {:2} {:02}:{:02}:{:02} {}", day_name(tm), month_name(tm), tm.tm_mday,
                       tm.tm_hour, tm.tm_min, tm.tm_sec, tm.tm_year + kTmYearBase);
}

std::string iso8601(UnixMillis ms) {
    const std::tm tm = utc_tm(ms);
    return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + kTmYearBase,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                       ms % kMsPerSecond);
}

} // namespace spoold::date
