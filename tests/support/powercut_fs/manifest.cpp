#include "tests/support/powercut_fs/manifest.hpp"

#include <cerrno>
#include <fcntl.h>
#include <fstream>
#include <optional>
#include <sstream>
#include <string_view>
#include <unistd.h>

namespace powercut {
namespace {

constexpr const char* kManifestHeader = "powercut-manifest 1";

std::string to_hex(std::string_view s) {
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    for (const char c : s) {
        const auto u = static_cast<unsigned char>(c);
        out += kDigits[u >> 4];
        out += kDigits[u & 0xf];
    }
    return out;
}

std::optional<std::string> from_hex(std::string_view s) {
    if (s.size() % 2 != 0) {
        return std::nullopt;
    }
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') {
            return c - '0';
        }
        if (c >= 'a' && c <= 'f') {
            return c - 'a' + 10;
        }
        return -1;
    };
    std::string out;
    for (std::size_t i = 0; i < s.size(); i += 2) {
        const int hi = nibble(s[i]);
        const int lo = nibble(s[i + 1]);
        if (hi < 0 || lo < 0) {
            return std::nullopt;
        }
        out += static_cast<char>(hi * 16 + lo);
    }
    return out;
}

int fsync_path(const std::string& path, int flags) {
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
    if (fd < 0) {
        return errno;
    }
    const int rc = ::fsync(fd) == 0 ? 0 : errno;
    ::close(fd);
    return rc;
}

} // namespace

int save_manifest(const std::string& backing, Ino next_ino, const InodeTable& inodes) {
    const std::string tmp = backing + "/manifest.tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << kManifestHeader << "\nnext " << next_ino << "\n";
        for (const auto& [ino, node] : inodes) {
            out << "i " << ino << ' ' << node->mode << ' ' << node->uid << ' ' << node->gid << ' '
                << node->mtime.tv_sec << ' ' << node->mtime.tv_nsec << "\n";
        }
        for (const auto& [ino, node] : inodes) {
            for (const auto& [name, child_ino] : node->durable) {
                out << "e " << ino << ' ' << child_ino << ' ' << to_hex(name) << "\n";
            }
        }
        out.flush();
        if (!out) {
            return EIO;
        }
    }
    if (const int err = fsync_path(tmp, O_RDONLY); err != 0) {
        return err;
    }
    if (::rename(tmp.c_str(), (backing + "/manifest").c_str()) != 0) {
        return errno;
    }
    return fsync_path(backing, O_RDONLY | O_DIRECTORY);
}

int load_manifest(const std::string& backing, Ino& next_ino, InodeTable& inodes) {
    std::ifstream in(backing + "/manifest");
    std::string line;
    if (!in || !std::getline(in, line)) {
        auto root = std::make_unique<Inode>();
        root->ino = kRootIno;
        root->mode = S_IFDIR | 0755;
        root->atime = root->mtime = root->ctime = wall_clock_now();
        inodes.emplace(kRootIno, std::move(root));
    } else {
        if (line != kManifestHeader) {
            return EINVAL;
        }
        while (std::getline(in, line)) {
            std::istringstream fields(line);
            std::string kind;
            fields >> kind;
            if (kind == "next") {
                fields >> next_ino;
            } else if (kind == "i") {
                auto node = std::make_unique<Inode>();
                fields >> node->ino >> node->mode >> node->uid >> node->gid >> node->mtime.tv_sec >>
                    node->mtime.tv_nsec;
                node->atime = node->ctime = node->mtime;
                const Ino ino = node->ino;
                inodes.emplace(ino, std::move(node));
            } else if (kind == "e") {
                Ino dir = 0;
                Ino ino = 0;
                std::string hex;
                fields >> dir >> ino >> hex;
                const auto name = from_hex(hex);
                const auto it = inodes.find(dir);
                Inode* node = it == inodes.end() ? nullptr : it->second.get();
                if (!name || node == nullptr) {
                    return EINVAL;
                }
                node->entries.emplace(*name, ino);
            }
            if (fields.fail()) {
                return EINVAL;
            }
        }
        if (!inodes.contains(kRootIno)) {
            return EINVAL;
        }
    }
    for (auto& [ino, node] : inodes) {
        node->durable = node->entries;
    }
    return 0;
}

} // namespace powercut
