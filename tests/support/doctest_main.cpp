// The main() of every doctest executable. It fails a run that was given a test-case filter
// but ran no test case: CTest runs each case by name, and a name that matches nothing (a
// renamed case, a name the discovery mangled) must not pass without testing anything.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <atomic>
#include <cstdio>
#include <string_view>

namespace {

std::atomic<int> g_cases_started{0};

// Counts the test cases that start; every other event is ignored.
struct CaseCounter : doctest::IReporter {
    explicit CaseCounter(const doctest::ContextOptions& /*options*/) {}
    void report_query(const doctest::QueryData& /*data*/) override {}
    void test_run_start() override {}
    void test_run_end(const doctest::TestRunStats& /*stats*/) override {}
    void test_case_start(const doctest::TestCaseData& /*data*/) override { ++g_cases_started; }
    void test_case_reenter(const doctest::TestCaseData& /*data*/) override {}
    void test_case_end(const doctest::CurrentTestCaseStats& /*stats*/) override {}
    void test_case_exception(const doctest::TestCaseException& /*e*/) override {}
    void subcase_start(const doctest::SubcaseSignature& /*signature*/) override {}
    void subcase_end() override {}
    void log_assert(const doctest::AssertData& /*data*/) override {}
    void log_message(const doctest::MessageData& /*data*/) override {}
    void test_case_skipped(const doctest::TestCaseData& /*data*/) override {}
};

} // namespace

DOCTEST_REGISTER_LISTENER("spoold_case_counter", 1, CaseCounter);

int main(int argc, char** argv) {
    bool filtered = false;
    bool query = false;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg(argv[i]);
        filtered = filtered || arg.starts_with("--test-case=") || arg.starts_with("-tc=");
        query = query || arg.starts_with("--list") || arg.starts_with("-l") ||
                arg.starts_with("--count") || arg.starts_with("--help") || arg == "-h" ||
                arg.starts_with("--version") || arg == "-v";
    }
    doctest::Context context(argc, argv);
    const int result = context.run();
    if (result == 0 && filtered && !query && g_cases_started == 0 && !context.shouldExit()) {
        std::fprintf(stderr, "doctest_main: the test-case filter matched no test case\n");
        return 1;
    }
    return result;
}
