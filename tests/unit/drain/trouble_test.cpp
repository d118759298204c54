#include <doctest/doctest.h>

#include "drain/trouble.hpp"

using namespace spoold;
using namespace spoold::drain;

namespace {

Reply reply(int code, const char* enhanced) { return make_reply(code, enhanced, "x"); }

DeliveryResult session(int code, const char* enhanced, bool trouble) {
    DeliveryResult r;
    r.session_reply = reply(code, enhanced);
    r.mailstore_trouble = trouble;
    r.per_recipient = {*r.session_reply, *r.session_reply};
    return r;
}

DeliveryResult each(std::vector<Reply> replies, bool trouble = false) {
    DeliveryResult r;
    r.per_recipient = std::move(replies);
    r.mailstore_trouble = trouble;
    return r;
}

} // namespace

TEST_CASE("the store's trouble is told from its mailboxes' trouble") {
    struct Row {
        const char* what;
        DeliveryResult result;
        Verdict verdict;
        std::uint32_t answered;
        std::uint32_t troubled;
    };
    DeliveryResult lost = each({reply(250, "2.0.0"), reply(451, "4.4.2")}, true);
    lost.connection_lost = true;
    DeliveryResult full = each({reply(250, "2.0.0"), reply(452, "4.3.1")}, true);
    full.store_wide = true;
    const Row rows[] = {
        {"connect refused", session(451, "4.4.1", true), Verdict::kStore, 0, 0},
        {"timeout", session(451, "4.4.2", true), Verdict::kStore, 0, 0},
        {"421 to MAIL", session(421, "4.3.2", true), Verdict::kStore, 0, 0},
        {"lost after one final reply", lost, Verdict::kStore, 0, 0},
        {"storage full for every mailbox (Maildir)", full, Verdict::kStore, 0, 0},
        {"421 to a RCPT", each({reply(250, "2.1.5"), reply(421, "4.3.2")}), Verdict::kStore, 0, 0},
        {"trouble flagged, no reply shows it", each({reply(250, "2.0.0")}, true), Verdict::kStore,
         0, 0},
        {"a dead shard at RCPT beside a delivery",
         each({reply(250, "2.0.0"), reply(451, "4.3.0"), reply(250, "2.0.0")}), Verdict::kMailboxes,
         2, 1},
        {"a dead shard at RCPT alone", each({reply(451, "4.3.0")}), Verdict::kMailboxes, 0, 1},
        {"Dovecot's storage error after DATA", each({reply(451, "4.2.0")}, true),
         Verdict::kMailboxes, 0, 1},
        {"4.4.x for one mailbox", each({reply(250, "2.0.0"), reply(450, "4.4.0")}),
         Verdict::kMailboxes, 1, 1},
        {"over quota is the recipient's own", each({reply(452, "4.2.2")}), Verdict::kHealthy, 1, 0},
        {"greylisting is policy", each({reply(451, "4.7.1")}), Verdict::kHealthy, 1, 0},
        {"unknown user", each({reply(550, "5.1.1")}), Verdict::kHealthy, 1, 0},
        {"MAIL FROM refused for good", session(550, "5.7.1", false), Verdict::kHealthy, 0, 0},
    };
    for (const Row& row : rows) {
        CAPTURE(row.what);
        const Weighed w = classify(row.result);
        CHECK(w.verdict == row.verdict);
        CHECK(w.answered == row.answered);
        CHECK(w.troubled == row.troubled);
    }
}
