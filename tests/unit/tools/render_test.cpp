#include <doctest/doctest.h>

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

TEST_CASE("status shows totals, each named class and each mailstore") {
    StatusReport r;
    r.counters.messages[1][0] = 10;
    r.counters.bytes[1][0] = 10240;
    r.counters.messages[5][2] = 1;
    r.now_ms = 10'000'000;
    r.oldest = QueueId{7};
    r.oldest_arrival_ms = 10'000'000 - 90'000;
    r.paused = true;
    r.mailstores.push_back(MailstoreStatus{"dovecot", "open", "12.5", false});
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
}
