#include <doctest/doctest.h>

#include "common/reply.hpp"

using namespace spoold;

TEST_CASE("a multi-line reply uses dashes on every line but the last") {
    const Reply r{250, "", {"mx.example greets you", "PIPELINING", "SIZE 52428800"}};
    CHECK(r.wire() == "250-mx.example greets you\r\n250-PIPELINING\r\n250 SIZE 52428800\r\n");
}

TEST_CASE("enhanced codes prefix each line") {
    CHECK(make_reply(452, "4.3.1", "full").wire() == "452 4.3.1 full\r\n");
    CHECK(make_reply(452, "4.3.1", "full").summary() == "452 4.3.1 full");
}

TEST_CASE("local trouble maps to a transient reply, never 5xx") {
    for (const ErrorKind k :
         {ErrorKind::kInvalid, ErrorKind::kNotFound, ErrorKind::kCorrupt, ErrorKind::kSpoolFull,
          ErrorKind::kDiskFull, ErrorKind::kIo, ErrorKind::kTimeout, ErrorKind::kUnavailable,
          ErrorKind::kProtocol, ErrorKind::kConfig, ErrorKind::kShutdown, ErrorKind::kInternal}) {
        const Reply r = reply_for_local_error(Error{k, "x"});
        CHECK(r.code >= 400);
        CHECK(r.code < 500);
    }
    CHECK(
        reply_for_local_error(Error{ErrorKind::kSpoolFull, ""}).summary().starts_with("452 4.3.1"));
    CHECK(reply_for_local_error(Error{ErrorKind::kIo, ""}).summary().starts_with("451 4.3.0"));
}
