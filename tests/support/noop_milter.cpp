// A mail filter that lets everything through: it negotiates, answers every step it is
// shown with "continue" and asks for no change. The benchmark's stand-in for a filter
// that costs nothing (tools/bench/milter_bench.py), so what is measured is spoold's side
// of the milter conversation. Not a test double for filter behaviour (tests/support/
// test_milter.py, on libmilter, is that).
//
//   noop_milter PORT     listens on 127.0.0.1:PORT (0: any), prints "listening PORT"
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
using spoold::test::milter_packet;

namespace {

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

// One MTA connection: every command but the macros, abort and quit gets a "continue"
// (at the end of the message that means accept).
void serve(int fd) {
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
                // Version 6, no actions, every step shown and answered.
                std::string data(12, '\0');
                data[3] = static_cast<char>(kProtocolVersion);
                replies += milter_packet('O', data);
                break;
            }
            case Command::kMacro:
            case Command::kAbort: break;
            case Command::kQuit: open = false; break;
            default: replies += milter_packet('c'); break;
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
    if (argc != 2) {
        std::fprintf(stderr, "usage: noop_milter PORT\n");
        return 2;
    }
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
        std::thread(serve, fd).detach();
    }
}
