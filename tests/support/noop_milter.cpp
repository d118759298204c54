// A mail filter that lets everything through: it negotiates, is shown every step, answers
// with "continue" and asks for no change. The benchmark's stand-in for a filter that
// costs nothing (tools/bench/milter_bench.py), so what is measured is spoold's side of the
// milter conversation. Not a test double for filter behaviour (tests/support/
// test_milter.py, on libmilter, is that).
//
//   noop_milter PORT [eom|every]   listens on 127.0.0.1:PORT (0: any), prints
//                                  "listening PORT"
// eom (the default) negotiates as rspamd's milter does: every step shown, only the end of
// the message answered (SMFIP_NR_* for the rest). every answers each step, as a libmilter
// filter with every callback and no negotiate callback (OpenDKIM, python-milter) does.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "milter/codec.hpp"
#include "tests/support/milter_wire.hpp"

using namespace spoold::milter;
using spoold::test::be32;
using spoold::test::milter_packet;

namespace {

// rspamd's answer to the option negotiation: no reply to any step but the end of the
// message (its RSPAMD_MILTER_FLAG_NOREPLY_MASK).
constexpr std::uint32_t kNoReplyButEnd = kNoReplyConnect | kNoReplyHelo | kNoReplyMail |
                                         kNoReplyRcpt | kNoReplyData | kNoReplyUnknown |
                                         kNoReplyHeader | kNoReplyEndOfHeaders | kNoReplyBody;

bool write_all(int fd, const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n <= 0) {
            return false;
        }
        done += static_cast<std::size_t>(n);
    }
    return true;
}

// One MTA connection: every command the filter answers gets a "continue" (at the end of
// the message that means accept); `protocol` is what it negotiated.
void serve(int fd, std::uint32_t protocol) {
    PacketReader reader;
    std::array<char, 65536> buf{};
    bool open = true;
    while (open) {
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n <= 0) {
            break;
        }
        reader.feed(std::string_view(buf.data(), static_cast<std::size_t>(n)));
        std::string replies;
        for (auto p = reader.next(); open; p = reader.next()) {
            if (!p) {
                open = false; // a broken stream: hang up
                break;
            }
            if (!*p) {
                break;
            }
            switch (static_cast<Command>((*p)->code)) {
            case Command::kOptionNegotiation: {
                // Version 6, no actions, every step shown.
                replies += milter_packet('O', be32(kProtocolVersion) + be32(0) + be32(protocol));
                break;
            }
            case Command::kMacro:
            case Command::kAbort: break;
            case Command::kQuit: open = false; break;
            case Command::kEndOfBody: replies += milter_packet('c'); break;
            default:
                if (protocol == 0) {
                    replies += milter_packet('c');
                }
                break;
            }
        }
        if (!replies.empty() && !write_all(fd, replies)) {
            break;
        }
    }
    ::close(fd);
}

} // namespace

int main(int argc, char** argv) {
    const std::string mode = argc == 3 ? argv[2] : "eom";
    if (argc < 2 || argc > 3 || (mode != "eom" && mode != "every")) {
        std::fprintf(stderr, "usage: noop_milter PORT [eom|every]\n");
        return 2;
    }
    const std::uint32_t protocol = mode == "eom" ? kNoReplyButEnd : 0;
    const int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[1])));
    socklen_t len = sizeof addr;
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(lfd, SOMAXCONN) != 0 ||
        ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        std::perror("noop_milter");
        return 1;
    }
    std::printf("listening %u\n", static_cast<unsigned>(ntohs(addr.sin_port)));
    std::fflush(stdout);
    for (;;) {
        const int fd = ::accept(lfd, nullptr, nullptr);
        if (fd < 0) {
            continue;
        }
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        std::thread(serve, fd, protocol).detach();
    }
}
