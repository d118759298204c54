#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <filesystem>
#include <set>
#include <sys/mount.h>
#include <sys/stat.h>

#include "drain/connectors/connectors.hpp"
#include "drain/connectors/maildir_mailstore.hpp"
#include "tests/unit/connectors/connector_test_support.hpp"

using namespace spoold;
using namespace spoold::drain;
using namespace spoold::drain::connectors;
namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

policy::MailstoreConfig maildir_config(const fs::path& root) {
    policy::MailstoreConfig c;
    c.name = "maildir";
    c.kind = policy::MailstoreKind::kMaildir;
    c.maildir_root = root.string();
    return c;
}

std::vector<fs::path> files_in(const fs::path& dir) {
    std::vector<fs::path> out;
    if (fs::exists(dir)) {
        for (const auto& e : fs::directory_iterator(dir)) {
            out.push_back(e.path());
        }
    }
    std::sort(out.begin(), out.end());
    return out;
}

} // namespace

TEST_CASE("maildir paths are the lower-cased domain and local part") {
    const auto p = maildir_path_for("Alice.Smith@Example.COM");
    REQUIRE(p);
    CHECK(p->domain == "example.com");
    CHECK(p->local == "alice.smith");
    CHECK(maildir_path_for("odd@local@example.com")->local == "odd@local");
}

TEST_CASE("addresses that could escape the maildir root are refused") {
    const std::vector<std::string> refused{"../etc@example.com",
                                           "a/b@example.com",
                                           ".hidden@example.com",
                                           "..@example.com",
                                           "a@..",
                                           "a@exa/mple.com",
                                           "a@.example.com",
                                           std::string("nul\0x@example.com", 17),
                                           "tab\tx@example.com",
                                           "\"quoted\"@example.com",
                                           "back\\slash@example.com",
                                           "noat",
                                           "@example.com",
                                           "a@"};
    for (const std::string& bad : refused) {
        CHECK_FALSE_MESSAGE(maildir_path_for(bad), bad);
    }
}

TEST_CASE("unique names follow the Maildir spec and differ every time") {
    const std::string a = maildir_unique_name("mx1.example/x:y");
    const std::string b = maildir_unique_name("mx1.example/x:y");
    CHECK(a != b);
    CHECK(a.find(".M") != std::string::npos);
    CHECK(a.find("P") != std::string::npos);
    CHECK(a.find("Q") != std::string::npos);
    CHECK(a.ends_with(".mx1.example\\057x\\072y"));
}

TEST_CASE("Maildir delivery writes exact bytes to new/, leaves tmp/ empty, refuses traversal") {
    test::TempDir root;
    asio::io_context ctx;
    ConnectorOptions options;
    options.hostname = "mx1.test";
    options.body_piece_bytes = 5;
    auto store = make_mailstore(ctx.get_executor(), maildir_config(root.path()), options);

    const std::string body = "Subject: hi\r\n\r\n.line one\r\nline two\r\n";
    const std::string stored =
        "Subject: hi\n\n.line one\nline two\n"; // Maildir keeps LF, no stuffing
    const auto res = test::run(
        ctx, store->deliver(test::make_request(
                 {"alice@example.com", "../../etc@example.com", "Bob@Example.com"}, body)));
    CHECK_FALSE(res.mailstore_trouble);
    CHECK_FALSE(res.session_reply);
    REQUIRE(res.per_recipient.size() == 3);
    CHECK(res.per_recipient[0].code == 250);
    CHECK(res.per_recipient[1].summary().starts_with("550 5.1.3"));
    CHECK(res.per_recipient[2].code == 250);

    for (const char* who : {"alice", "bob"}) {
        const fs::path box = root.path() / "example.com" / who;
        const auto delivered = files_in(box / "new");
        REQUIRE(delivered.size() == 1);
        CHECK(test::read_file(delivered[0]) == stored);
        CHECK(delivered[0].filename().string().ends_with(",S=" + std::to_string(stored.size())));
        CHECK(files_in(box / "tmp").empty());
        CHECK(fs::is_directory(box / "cur"));
        struct stat st {};
        REQUIRE(::stat(box.c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0700);
    }
    CHECK_FALSE(fs::exists(root.path() / "etc"));
    CHECK_FALSE(fs::exists(root.path().parent_path() / "etc@example.com"));

    // A second message gets its own unique name beside the first.
    (void)test::run(ctx, store->deliver(test::make_request({"alice@example.com"}, "second\r\n")));
    const auto both = files_in(root.path() / "example.com" / "alice" / "new");
    REQUIRE(both.size() == 2);
    CHECK(both[0].filename() != both[1].filename());
}

TEST_CASE("Maildir file I/O can run on a pool passed in") {
    test::TempDir root;
    asio::io_context ctx;
    asio::thread_pool pool(1);
    ConnectorOptions options;
    options.blocking_executor = pool.get_executor();
    MaildirMailstore store(ctx.get_executor(), maildir_config(root.path()), options);
    const auto res = test::run(ctx, store.deliver(test::make_request({"a@x.test"}, "body\r\n")));
    CHECK(res.per_recipient.at(0).code == 250);
    CHECK(files_in(root.path() / "x.test" / "a" / "new").size() == 1);
    pool.join();
}

TEST_CASE("a missing maildir root is mailstore trouble and fails probe(); a present one passes") {
    test::TempDir root;
    asio::io_context ctx;
    MaildirMailstore missing(ctx.get_executor(), maildir_config(root.path() / "not-mounted"), {});
    const auto res = test::run(ctx, missing.deliver(test::make_request({"a@x.test"}, "body\r\n")));
    CHECK(res.mailstore_trouble);
    CHECK(res.store_wide); // no mailbox could be written: the store's trouble
    CHECK(res.per_recipient.at(0).summary().starts_with("451 4.3.0"));
    CHECK_FALSE(fs::exists(root.path() / "not-mounted")); // never created in its place
    CHECK_FALSE(test::run(ctx, missing.probe()));

    MaildirMailstore present(ctx.get_executor(), maildir_config(root.path()), {});
    CHECK(test::run(ctx, present.probe()));
    CHECK(files_in(root.path()).empty()); // the probe file is gone
}

TEST_CASE("a spool read failure mid-body is not mailstore trouble and leaves no file") {
    test::TempDir root;
    asio::io_context ctx;
    MaildirMailstore store(ctx.get_executor(), maildir_config(root.path()), {});
    auto req = test::make_request({"a@x.test"}, "");
    req.read_body = [](std::uint32_t, std::size_t) -> Result<spool::BodyPiece> {
        return fail(ErrorKind::kIo, "spool read failed");
    };
    const auto res = test::run(ctx, store.deliver(req));
    CHECK_FALSE(res.mailstore_trouble);
    CHECK(res.per_recipient.at(0).code == 451);
    CHECK(files_in(root.path() / "x.test" / "a" / "new").empty());
    CHECK(files_in(root.path() / "x.test" / "a" / "tmp").empty());
}

namespace {

// A tiny tmpfs to fill up; needs CAP_SYS_ADMIN, so the test is skipped without it.
class TinyFilesystem {
public:
    explicit TinyFilesystem(const fs::path& at, unsigned long flags = 0) : at_(at) {
        fs::create_directories(at_);
        mounted_ = ::mount("tmpfs", at_.c_str(), "tmpfs", flags, "size=64k,mode=0700") == 0;
    }
    ~TinyFilesystem() {
        if (mounted_) {
            ::umount2(at_.c_str(), MNT_DETACH);
        }
    }
    TinyFilesystem(const TinyFilesystem&) = delete;
    TinyFilesystem& operator=(const TinyFilesystem&) = delete;
    bool mounted() const { return mounted_; }

private:
    fs::path at_;
    bool mounted_ = false;
};

} // namespace

TEST_CASE(
    "a full disk defers each recipient with 452 4.3.1, counts as trouble and leaves no tmp file") {
    test::TempDir dir;
    TinyFilesystem tiny(dir.path() / "store");
    if (!tiny.mounted()) {
        MESSAGE("cannot mount a tmpfs here (needs CAP_SYS_ADMIN); skipped");
        return;
    }
    asio::io_context ctx;
    MaildirMailstore store(ctx.get_executor(), maildir_config(dir.path() / "store"), {});
    const auto res =
        test::run(ctx, store.deliver(test::make_request({"a@x.test", "b@x.test"},
                                                        std::string(256 * 1024, 'z') + "\r\n")));
    CHECK(res.mailstore_trouble);
    CHECK(res.store_wide); // every mailbox lies on the full filesystem
    REQUIRE(res.per_recipient.size() == 2);
    CHECK(res.per_recipient[0].summary().starts_with("452 4.3.1"));
    CHECK(res.per_recipient[1].summary().starts_with("452 4.3.1"));
    for (const char* who : {"a", "b"}) {
        CHECK(files_in(dir.path() / "store" / "x.test" / who / "tmp").empty());
        CHECK(files_in(dir.path() / "store" / "x.test" / who / "new").empty());
    }
}

TEST_CASE("a full mailbox on a filesystem of its own is that mailbox's trouble, not the store's") {
    test::TempDir root;
    TinyFilesystem tiny(root.path() / "x.test" / "a");
    if (!tiny.mounted()) {
        MESSAGE("cannot mount a tmpfs here (needs CAP_SYS_ADMIN); skipped");
        return;
    }
    asio::io_context ctx;
    MaildirMailstore store(ctx.get_executor(), maildir_config(root.path()), {});
    const auto res =
        test::run(ctx, store.deliver(test::make_request({"a@x.test", "b@x.test"},
                                                        std::string(256 * 1024, 'z') + "\r\n")));
    CHECK(res.mailstore_trouble);
    CHECK_FALSE(res.store_wide);
    REQUIRE(res.per_recipient.size() == 2);
    CHECK(res.per_recipient[0].summary().starts_with("452 4.3.1"));
    CHECK(res.per_recipient[1].code == 250);
    CHECK(files_in(root.path() / "x.test" / "b" / "new").size() == 1);
}

TEST_CASE("a read-only maildir filesystem is the store's trouble") {
    test::TempDir dir;
    TinyFilesystem read_only(dir.path() / "store", MS_RDONLY);
    if (!read_only.mounted()) {
        MESSAGE("cannot mount a tmpfs here (needs CAP_SYS_ADMIN); skipped");
        return;
    }
    asio::io_context ctx;
    MaildirMailstore store(ctx.get_executor(), maildir_config(dir.path() / "store"), {});
    const auto res = test::run(ctx, store.deliver(test::make_request({"a@x.test"}, "body\r\n")));
    CHECK(res.mailstore_trouble);
    CHECK(res.store_wide);
    CHECK(res.per_recipient.at(0).summary().starts_with("451 4.3.0"));
    CHECK_FALSE(test::run(ctx, store.probe()));
}
