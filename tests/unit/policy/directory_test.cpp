#include <doctest/doctest.h>

#include <map>
#include <string>

#include "policy/directory_file.hpp"

using namespace spoold;
using namespace spoold::policy;

namespace {

DirectoryConfig list_config() {
    DirectoryConfig c;
    c.file = "recipients";
    c.default_domain = "example.com";
    return c;
}

// An in-memory directory standing in for the LMDB store.
struct FakeDirectory {
    std::map<std::string, std::string, std::less<>> entries;
    bool down = false;
    int lookups = 0;

    DirectoryLookup lookup() {
        return [this](std::string_view key) -> Result<std::optional<std::string>> {
            ++lookups;
            if (down) {
                return fail(ErrorKind::kUnavailable, "directory down");
            }
            const auto it = entries.find(key);
            if (it == entries.end()) {
                return std::optional<std::string>{};
            }
            return std::optional<std::string>{it->second};
        };
    }
    void load(const std::vector<DirectoryEntry>& list) {
        entries.clear();
        for (const auto& e : list) {
            entries.emplace(e.key, e.target);
        }
    }
};

} // namespace

TEST_CASE("list directory files parse into sorted normalized entries") {
    const auto entries = parse_directory("# comment\n"
                                         "\n"
                                         "  Alice@Example.COM  \r\n"
                                         "bob\n"
                                         "info@example.com: Alice@example.com\n"
                                         "@example.net\n"
                                         "@example.org: postbox@example.com\n"
                                         "alice@example.com: ignored@example.com\n",
                                         list_config(), "recipients")
                             .value();
    const std::vector<DirectoryEntry> expected{
        {"@example.net", ""},
        {"@example.org", "postbox@example.com"},
        {"alice@example.com", ""},
        {"bob@example.com", ""},
        {"info@example.com", "alice@example.com"},
    };
    CHECK(entries == expected);
}

TEST_CASE("a byte order mark and CRLF line ends are not part of the addresses") {
    const auto entries = parse_directory("\xEF\xBB\xBF"
                                         "alice@example.com\r\nbob@example.com\r\n",
                                         list_config(), "f")
                             .value();
    REQUIRE(entries.size() == 2);
    CHECK(entries[0].key == "alice@example.com");
    CHECK(entries[1].key == "bob@example.com");
}

TEST_CASE("passwd-file directories take the user field") {
    DirectoryConfig c = list_config();
    c.format = DirectoryFormat::kPasswd;
    const auto entries =
        parse_directory("carol@example.com:{SHA512-CRYPT}$6$x:1000:1000::/home/carol::\n"
                        "# disabled:x:1:1\n"
                        "dave:{PLAIN}secret:1001:1001\n",
                        c, "users")
            .value();
    REQUIRE(entries.size() == 2);
    CHECK(entries[0].key == "carol@example.com");
    CHECK(entries[1].key == "dave@example.com");
}

TEST_CASE("bad directory lines are refused with file and line") {
    DirectoryConfig no_default = list_config();
    no_default.default_domain.clear();
    CHECK(parse_directory("a@example.com\nbob\n", no_default, "f").error().message ==
          "f:2: \"bob\" has no domain and directory.default_domain is not set");
    CHECK(parse_directory("a b@example.com\n", list_config(), "f").error().message ==
          "f:1: \"a b@example.com\" has a bad local part");
    CHECK(parse_directory("a@exa mple.com\n", list_config(), "f")
              .error()
              .message.starts_with("f:1: "));
    CHECK(parse_directory("a@example.com:\n", list_config(), "f").error().message ==
          "f:1: alias without a target");
    CHECK(parse_directory("a@example.com: @example.com\n", list_config(), "f").error().kind ==
          ErrorKind::kConfig);
    CHECK(parse_directory("a@example.com: A@example.com\n", list_config(), "f")
              .error()
              .message.find("alias of itself") != std::string::npos);
}

TEST_CASE("the sample recipients file parses") {
    DirectoryConfig c = list_config();
    c.file = SPOOLD_SOURCE_DIR "/etc/recipients.example";
    const auto entries = load_directory(c);
    REQUIRE_MESSAGE(entries, (entries ? "" : entries.error().message));
    CHECK(entries->size() == 9);
    c.file = "/nonexistent/recipients";
    CHECK(load_directory(c).error().kind == ErrorKind::kIo);
}

TEST_CASE("recipients are checked against local domains and the directory") {
    FakeDirectory dir;
    dir.load(parse_directory("alice@example.com\n"
                             "info@example.com: alice@example.com\n"
                             "gone@example.com: removed@example.com\n"
                             "fwd@example.com: someone@elsewhere.example\n"
                             "@example.net\n"
                             "loop1@example.com: loop2@example.com\n"
                             "loop2@example.com: loop1@example.com\n",
                             list_config(), "f")
                 .value());
    const RecipientPolicy policy({"Example.com", "example.net"}, dir.lookup(), list_config());
    struct Case {
        std::string address;
        Verdict expected;
    };
    const Case cases[] = {
        {"alice@example.com", Verdict::kAccept},
        {"ALICE@EXAMPLE.COM", Verdict::kAccept},
        {"alice@example.com.", Verdict::kAccept},
        {"alice+news@example.com", Verdict::kAccept},
        {"+news@example.com", Verdict::kUnknownUser},
        {"bob@example.com", Verdict::kUnknownUser},
        {"info@example.com", Verdict::kAccept},
        {"gone@example.com", Verdict::kUnknownUser},
        {"fwd@example.com", Verdict::kAccept},
        {"anyone@example.net", Verdict::kAccept},
        {"Postmaster@example.com", Verdict::kAccept},
        {"postmaster", Verdict::kAccept},
        {"alice", Verdict::kUnknownUser},
        {"alice@sub.example.com", Verdict::kRelayDenied},
        {"alice@example.org", Verdict::kRelayDenied},
        {"alice@", Verdict::kRelayDenied},
        {"@example.com", Verdict::kUnknownUser},
        {"loop1@example.com", Verdict::kTempFail},
    };
    for (const auto& c : cases) {
        CAPTURE(c.address);
        CHECK(policy.check(c.address) == c.expected);
    }
}

TEST_CASE("a directory that cannot answer gives when_unavailable, never unknown user") {
    FakeDirectory dir;
    dir.load({{"alice@example.com", ""}});
    dir.down = true;
    DirectoryConfig c = list_config();
    const RecipientPolicy tempfail({"example.com"}, dir.lookup(), c);
    CHECK(tempfail.check("alice@example.com") == Verdict::kTempFail);
    CHECK(tempfail.check("nobody@example.com") == Verdict::kTempFail);
    CHECK(tempfail.check("x@other.example") == Verdict::kRelayDenied);
    c.when_unavailable = DirectoryMissing::kAccept;
    const RecipientPolicy accept({"example.com"}, dir.lookup(), c);
    CHECK(accept.check("nobody@example.com") == Verdict::kAccept);
}

TEST_CASE("without a directory every local-domain address is accepted") {
    DirectoryConfig c;
    const RecipientPolicy policy({"example.com"}, nullptr, c);
    CHECK(policy.check("anyone@example.com") == Verdict::kAccept);
    CHECK(policy.check("anyone@example.org") == Verdict::kRelayDenied);
}

TEST_CASE("a reloaded directory picks up a new address") {
    FakeDirectory dir;
    dir.load({{"alice@example.com", ""}});
    const RecipientPolicy policy({"example.com"}, dir.lookup(), list_config());
    CHECK(policy.check("newbie@example.com") == Verdict::kUnknownUser);
    dir.load(
        parse_directory("alice@example.com\nnewbie@example.com\n", list_config(), "f").value());
    CHECK(policy.check("newbie@example.com") == Verdict::kAccept);
}
