#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/result.hpp"

using namespace spoold;

namespace {

Result<int> number(bool ok) {
    if (!ok) {
        return fail(ErrorKind::kNotFound, "no number");
    }
    return 20;
}

Status step(std::vector<std::string>& trace, const std::string& name, bool ok) {
    trace.push_back(name);
    if (!ok) {
        return fail(ErrorKind::kIo, name + " failed");
    }
    return {};
}

Result<int> doubled(bool ok) {
    SPOOLD_TRY(n, number(ok));
    return n * 2;
}

Status steps(std::vector<std::string>& trace, bool second_ok) {
    SPOOLD_CHECK(step(trace, "first", true));
    SPOOLD_CHECK(step(trace, "second", second_ok));
    SPOOLD_CHECK(step(trace, "third", true));
    return {};
}

} // namespace

TEST_CASE("SPOOLD_TRY hands on the value, or returns the error from the caller") {
    auto good = doubled(true);
    REQUIRE(good.has_value());
    CHECK(*good == 40);
    auto bad = doubled(false);
    REQUIRE_FALSE(bad.has_value());
    CHECK(bad.error().kind == ErrorKind::kNotFound);
    CHECK(bad.error().message == "no number");
}

TEST_CASE("SPOOLD_CHECK stops at the first error and passes it up unchanged") {
    std::vector<std::string> trace;
    CHECK(steps(trace, true).has_value());
    CHECK(trace == std::vector<std::string>{"first", "second", "third"});
    trace.clear();
    auto st = steps(trace, false);
    REQUIRE_FALSE(st.has_value());
    CHECK(st.error().kind == ErrorKind::kIo);
    CHECK(st.error().message == "second failed");
    CHECK(trace == std::vector<std::string>{"first", "second"});
}
