// libFuzzer target: what `spoolctl import` reads, as an mbox (MboxReader, mboxrd
// unquoting) or as one .eml file, through the same steps import applies to each message
// (the X-Spoold-Envelope block, address checks, CRLF conversion). Every message comes out
// with CRLF line ends only, the envelope block survives being written and read back, and
// a clean message survives `spoolctl export --mbox` and import unchanged.
// Input: 8 control bytes (mbox or .eml, the export's sender), then the file's bytes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_support.hpp"
#include "tools/spoolctl/mbox.hpp"

using namespace spoold;
using namespace spoold::spoolctl;
using fuzz::check;

namespace {

void check_crlf_only(std::string_view text, const char* what) {
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n') {
            check(i > 0 && text[i - 1] == '\r', what, text);
        }
    }
}

bool same(const FileEnvelope& a, const FileEnvelope& b) {
    return a.mail_from == b.mail_from && a.recipients == b.recipients && a.klass == b.klass;
}

// One message as Importer::add takes it apart.
void import_one(std::string message) {
    const std::string original = message;
    const FileEnvelope envelope = take_envelope_block(message);
    check(original.ends_with(message), "the envelope block took more than a prefix");
    for (const auto& r : envelope.recipients) {
        (void)plausible_address(r);
    }
    const std::string body = to_crlf(message);
    check_crlf_only(body, "a bare LF left by to_crlf");
    check(to_crlf(body) == body, "to_crlf is not idempotent", body);
    check(body.starts_with(header_section(body)), "the header section is not a prefix");

    std::string again = envelope_block(envelope) + message;
    const FileEnvelope reread = take_envelope_block(again);
    check(same(reread, envelope), "the envelope block does not survive a round trip");
    check(again == message, "the envelope block round trip changed the message");
}

// The payload with its line ends made CRLF and no bare CR: a message as the spool keeps it.
std::string clean_message(std::string_view payload) {
    std::string text;
    for (const char c : payload) {
        if (c != '\r') {
            text += c;
        }
    }
    if (!text.empty() && !text.ends_with('\n')) {
        text += '\n';
    }
    return to_crlf(text);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto [choices, bytes] = fuzz::split_input(data, size);
    if (choices.one_in(2)) {
        import_one(std::string(bytes));
    } else if (!bytes.empty()) {
        std::FILE* f = fmemopen(const_cast<char*>(bytes.data()), bytes.size(), "r"); // NOLINT
        check(f != nullptr, "fmemopen failed");
        MboxReader reader(f);
        std::size_t messages = 0;
        while (auto m = reader.next()) {
            ++messages;
            check(messages <= bytes.size(), "more messages than bytes");
            check(m->sender.find(' ') == std::string::npos, "a sender with a space");
            check_crlf_only(m->message, "a bare LF in a message read from an mbox");
            import_one(std::move(m->message));
        }
        std::fclose(f);
    }

    // export --mbox, then import: the same messages and senders.
    const std::string message = clean_message(bytes);
    const std::string sender = choices.one_in(4) ? "" : "sender@origin.example";
    const std::size_t copies = 1 + choices.below(2);
    std::string mbox;
    for (std::size_t i = 0; i < copies; ++i) {
        append_mboxrd(mbox, mbox_from_line(sender, 0), message);
    }
    const auto back = parse_mbox(mbox);
    check(back.size() == copies, "export and import changed the number of messages", mbox);
    for (const auto& m : back) {
        check(m.message == message, "export and import changed a message", mbox);
        check(m.sender == (sender.empty() ? "MAILER-DAEMON" : sender),
              "export and import changed the sender", m.sender);
    }
    return 0;
}
