#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "tools/spoolctl/render.hpp"

using namespace spoold;
using namespace spoold::spoolctl;

namespace {

spool::Envelope sample() {
    spool::Envelope env;
    env.id = QueueId{0x123456789ULL};
    env.arrival_ms = 1'000'000;
    env.klass = 2;
    env.size = 4300;
    env.mail_from = "news@list.example";
    for (const char* a : {"a@x.example", "b@x.example", "c@x.example"}) {
        spool::Recipient r;
        r.address = a;
        env.recipients.push_back(r);
    }
    env.recipients[0].state = spool::RcptState::kDelivered;
    env.recipients[1].state = spool::RcptState::kDeferred;
    env.recipients[1].attempts = 3;
    env.recipients[1].last_response = "452 4.2.2 \"over quota\"\x1b[2J";
    return env;
}

} // namespace

TEST_CASE("class names come from a comma list and unknown ids show as numbers") {
    const auto names = ClassNames::from_csv("urgent, normal,bulk");
    CHECK(names.name(0) == "urgent");
    CHECK(names.name(2) == "bulk");
    CHECK(names.name(7) == "7");
    CHECK(names.find("normal") == spool::ClassId{1});
    CHECK(names.find("5") == spool::ClassId{5});
    CHECK_FALSE(names.find("nope"));
    CHECK_FALSE(names.find("16"));
    CHECK(ClassNames().name(1) == "1");
}

TEST_CASE("a table row shows the first waiting recipient, the others waiting and the reply") {
    const auto env = sample();
    const auto row = table_row(env, spool::MsgState::kDeferred, env.arrival_ms + 2 * 3'600'000,
                               ClassNames::from_csv("urgent,normal,bulk"));
    CHECK(row.starts_with(env.id.text()));
    CHECK(row.find("2h00m") != std::string::npos);
    CHECK(row.find("4.2K") != std::string::npos);
    CHECK(row.find("bulk") != std::string::npos);
    CHECK(row.find("b@x.example +1") != std::string::npos);
    CHECK(row.find("deferred") != std::string::npos);
    CHECK(row.find("452 4.2.2") != std::string::npos);
    CHECK(row.find('\x1b') == std::string::npos); // escape sequences from the network are defused
    CHECK(row.back() == '\n');
}

TEST_CASE("a JSON line holds the envelope and every recipient") {
    const auto env = sample();
    const auto line =
        json_message(env, spool::MsgState::kDeferred, env.arrival_ms + 5000, ClassNames());
    CHECK(line.find(R"("id":")" + env.id.text() + "\"") != std::string::npos);
    CHECK(line.find(R"("class":"2")") != std::string::npos);
    CHECK(line.find(R"("state":"deferred")") != std::string::npos);
    CHECK(line.find(R"("age_s":5)") != std::string::npos);
    CHECK(line.find(R"({"address":"b@x.example","state":"deferred","attempts":3)") !=
          std::string::npos);
    CHECK(line.find(R"(\"over quota\"\u001b[2J)") != std::string::npos);
    CHECK(line.find('\n') == line.size() - 1);
}

TEST_CASE("show's JSON line ends with the header section as one more string member") {
    const auto env = sample();
    const auto plain = json_message(env, spool::MsgState::kReady, env.arrival_ms, ClassNames());
    const auto line = json_message(env, spool::MsgState::kReady, env.arrival_ms, ClassNames(),
                                   "Subject: \"hi\"\r\n");
    CHECK(plain.find("headers") == std::string::npos);
    REQUIRE(line.size() > plain.size());
    // The same members, then the headers, then the end of the object.
    CHECK(line.substr(0, plain.size() - 2) == plain.substr(0, plain.size() - 2));
    CHECK(line.substr(plain.size() - 2) == R"(,"headers":"Subject: \"hi\"\r\n"})"
                                           "\n");
}

TEST_CASE("a quarantined message shows its filter's reason in list, JSON and show") {
    auto env = sample();
    env.held = true;
    env.hold_reason = "rspamd: Gtube pattern\x1b[2J";
    const ClassNames names = ClassNames::from_csv("urgent,normal,bulk");
    const auto row = table_row(env, spool::MsgState::kHeld, env.arrival_ms, names);
    CHECK(row.find("held") != std::string::npos);
    CHECK(row.find("quarantined: rspamd: Gtube") != std::string::npos);
    CHECK(row.find('\x1b') == std::string::npos);
    const auto line = json_message(env, spool::MsgState::kHeld, env.arrival_ms, names);
    CHECK(line.find(R"("held":true,"hold_reason":"rspamd: Gtube pattern\u001b[2J")") !=
          std::string::npos);
    const auto text = show_text(env, spool::MsgState::kHeld, env.arrival_ms, names);
    CHECK(text.find("state:       held\n") != std::string::npos);
    CHECK(text.find("quarantined: rspamd: Gtube pattern?[2J\n") != std::string::npos);
    // Without a reason, none of it.
    env.hold_reason.clear();
    CHECK(json_message(env, spool::MsgState::kHeld, env.arrival_ms, names).find("hold_reason") ==
          std::string::npos);
    CHECK(show_text(env, spool::MsgState::kHeld, env.arrival_ms, names).find("quarantined") ==
          std::string::npos);
}

TEST_CASE("status shows totals, each named class and each mailstore") {
    StatusReport r;
    r.counters.messages[1][0] = 10;
    r.counters.bytes[1][0] = 10240;
    r.counters.messages[5][2] = 1;
    r.now_ms = 10'000'000;
    r.oldest = QueueId{7};
    r.oldest_arrival_ms = 10'000'000 - 90'000;
    r.paused = true;
    MailstoreStatus dovecot;
    dovecot.name = "dovecot";
    dovecot.breaker = "open";
    dovecot.rate = "12.5";
    r.mailstores.push_back(dovecot);
    const auto names = ClassNames::from_csv("urgent,normal,bulk");
    const auto text = status_text(r, names);
    CHECK(text.find("messages: 11") != std::string::npos);
    CHECK(text.find("PAUSED") != std::string::npos);
    CHECK(text.find("1m old") != std::string::npos);
    CHECK(text.find("urgent") != std::string::npos);
    CHECK(text.find("\n5 ") != std::string::npos); // an unnamed class with messages is shown
    CHECK(text.find("dovecot") != std::string::npos);
    const auto json = status_json(r, names);
    CHECK(json.find(R"("messages":11)") != std::string::npos);
    CHECK(json.find(R"("class":"normal","class_id":1,"ready":{"messages":10,"bytes":10240})") !=
          std::string::npos);
    CHECK(json.find(R"("name":"dovecot","breaker":"open","rate":"12.5","paused":true)") !=
          std::string::npos);
    CHECK(json.find(R"("removed_pending":null)") != std::string::npos); // the spool did not say
    r.removed_pending = 42;
    CHECK(status_text(r, names).find("sweep:    42 removed messages'") != std::string::npos);
    CHECK(status_json(r, names).find(R"("removed_pending":42)") != std::string::npos);
}

namespace {

// The [start, end) columns of each word of a line.
std::vector<std::pair<std::size_t, std::size_t>> words(const std::string& line) {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    std::size_t i = 0;
    while (i < line.size()) {
        if (line[i] == ' ') {
            ++i;
            continue;
        }
        const std::size_t start = i;
        while (i < line.size() && line[i] != ' ') {
            ++i;
        }
        out.emplace_back(start, i);
    }
    return out;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const auto nl = text.find('\n', pos);
        out.push_back(text.substr(pos, nl - pos));
        pos = nl == std::string::npos ? text.size() : nl + 1;
    }
    return out;
}

} // namespace

TEST_CASE("the mailstore table prints each published value under its own header") {
    StatusReport r;
    MailstoreStatus ms;
    ms.name = "dovecot-with-a-long-name";
    parse_breaker_meta("half-open limit=1 in_flight=1", ms); // as the daemon publishes it
    CHECK(ms.breaker == "half-open");
    CHECK(ms.limit == 1U);
    CHECK(ms.in_flight == 1U);
    ms.rate = "1234.5";
    r.mailstores.push_back(ms);
    MailstoreStatus quiet;
    quiet.name = "relay";
    parse_breaker_meta("closed limit=16 in_flight=0", quiet);
    quiet.rate = "0.0";
    quiet.paused = true;
    r.mailstores.push_back(quiet);

    const auto all = lines_of(status_text(r, ClassNames()));
    const auto header = std::find_if(all.begin(), all.end(),
                                     [](const auto& l) { return l.starts_with("MAILSTORE"); });
    REQUIRE(header != all.end());
    REQUIRE(std::distance(header, all.end()) == 3);
    const auto heads = words(*header);
    REQUIRE(heads.size() == 6);
    const std::vector<std::vector<std::string>> want = {
        {"dovecot-with-a..", "half-open", "1", "1", "1234.5", "running"},
        {"relay", "closed", "16", "0", "0.0", "paused"}};
    for (std::size_t row = 0; row < want.size(); ++row) {
        const std::string& line = *(header + 1 + static_cast<std::ptrdiff_t>(row));
        const auto cells = words(line);
        CAPTURE(line);
        REQUIRE(cells.size() == heads.size());
        for (std::size_t i = 0; i < cells.size(); ++i) {
            CAPTURE(i);
            CHECK(line.substr(cells[i].first, cells[i].second - cells[i].first) == want[row][i]);
            // Under its header: the two overlap on the line.
            CHECK(cells[i].first < heads[i].second);
            CHECK(heads[i].first < cells[i].second);
        }
    }
    const auto json = status_json(r, ClassNames());
    CHECK(json.find(
              R"("breaker":"half-open","rate":"1234.5","paused":false,"limit":1,"in_flight":1)") !=
          std::string::npos);
}
