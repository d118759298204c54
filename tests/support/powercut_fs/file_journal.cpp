#include "tests/support/powercut_fs/file_journal.hpp"

#include <algorithm>
#include <cerrno>
#include <unistd.h>

namespace powercut {
namespace {

int pwrite_all(int fd, const char* data, std::size_t len, std::uint64_t offset) {
    while (len > 0) {
        const ssize_t n = ::pwrite(fd, data, len, static_cast<off_t>(offset));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        data += n;
        len -= static_cast<std::size_t>(n);
        offset += static_cast<std::uint64_t>(n);
    }
    return 0;
}

int set_size(int fd, std::uint64_t size) {
    return ::ftruncate(fd, static_cast<off_t>(size)) == 0 ? 0 : errno;
}

// One sector-sized (or smaller) part of an unsynced entry: the unit a torn cut keeps or
// drops. A size change is one piece.
struct Piece {
    std::size_t entry = 0;
    std::uint64_t begin = 0; // offset within the entry's data
    std::uint64_t end = 0;
};

} // namespace

int read_at(int fd, std::string& out, std::size_t len, std::uint64_t offset) {
    out.resize(len);
    std::size_t done = 0;
    while (done < len) {
        const ssize_t n =
            ::pread(fd, out.data() + done, len - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno;
        }
        if (n == 0) {
            break;
        }
        done += static_cast<std::size_t>(n);
    }
    out.resize(done);
    return 0;
}

int FileJournal::write(int fd, std::uint64_t size, std::uint64_t offset, const char* data,
                       std::size_t len) {
    Entry e;
    e.offset = offset;
    e.old_size = size;
    e.data.assign(data, len);
    if (offset < size) {
        const auto overlap = static_cast<std::size_t>(std::min<std::uint64_t>(len, size - offset));
        if (const int err = read_at(fd, e.old_data, overlap, offset); err != 0) {
            return err;
        }
    }
    if (const int err = pwrite_all(fd, data, len, offset); err != 0) {
        return err;
    }
    entries_.push_back(std::move(e));
    return 0;
}

int FileJournal::truncate(int fd, std::uint64_t size, std::uint64_t new_size) {
    Entry e;
    e.is_truncate = true;
    e.offset = new_size;
    e.old_size = size;
    e.new_size = new_size;
    if (new_size < size) {
        if (const int err = read_at(fd, e.old_data, size - new_size, new_size); err != 0) {
            return err;
        }
    }
    if (const int err = set_size(fd, new_size); err != 0) {
        return err;
    }
    entries_.push_back(std::move(e));
    return 0;
}

int FileJournal::cut(int fd, std::mt19937_64* rng, std::uint64_t sector, CutStats& stats) {
    if (entries_.empty()) {
        return 0;
    }
    ++stats.files_cut;
    for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
        if (const int err = pwrite_all(fd, it->old_data.data(), it->old_data.size(), it->offset);
            err != 0) {
            return err;
        }
        if (const int err = set_size(fd, it->old_size); err != 0) {
            return err;
        }
    }
    std::vector<Piece> pieces;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
        const Entry& e = entries_[i];
        if (e.is_truncate) {
            pieces.push_back(Piece{i, 0, 0});
            continue;
        }
        std::uint64_t pos = 0;
        while (pos < e.data.size()) {
            const std::uint64_t at = e.offset + pos;
            const std::uint64_t to_boundary = sector - at % sector;
            const std::uint64_t end = std::min<std::uint64_t>(e.data.size(), pos + to_boundary);
            pieces.push_back(Piece{i, pos, end});
            pos = end;
        }
    }
    std::size_t keep = 0;
    if (rng != nullptr && !pieces.empty()) {
        std::shuffle(pieces.begin(), pieces.end(), *rng);
        keep = std::uniform_int_distribution<std::size_t>(0, pieces.size())(*rng);
    }
    stats.pieces_dropped += pieces.size() - keep;
    stats.pieces_kept += keep;
    pieces.resize(keep);
    std::sort(pieces.begin(), pieces.end(), [](const Piece& a, const Piece& b) {
        return a.entry != b.entry ? a.entry < b.entry : a.begin < b.begin;
    });
    for (const Piece& p : pieces) {
        const Entry& e = entries_[p.entry];
        const int err = e.is_truncate ? set_size(fd, e.new_size)
                                      : pwrite_all(fd, e.data.data() + p.begin, p.end - p.begin,
                                                   e.offset + p.begin);
        if (err != 0) {
            return err;
        }
    }
    entries_.clear();
    return 0;
}

} // namespace powercut
