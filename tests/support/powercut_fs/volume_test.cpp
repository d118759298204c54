// The power-cut filesystem's model without FUSE: what a cut keeps, and that a seed
// reproduces a torn cut. mount_test.cpp drives the same through a real mount.
#include <doctest/doctest.h>

#include <memory>
#include <set>
#include <string>

#include "tests/support/powercut_fs/volume.hpp"
#include "tests/unit/spool/spool_test_support.hpp"

namespace powercut {
namespace {

using spoold::spool::test::TempDir;

constexpr std::uint64_t kSector = 512;

std::unique_ptr<Volume> boot(const std::string& backing) {
    std::string error;
    auto v = Volume::open(backing, error);
    REQUIRE_MESSAGE(v != nullptr, error);
    return v;
}

Ino make_dir(Volume& v, Ino parent, const std::string& name) {
    struct stat st {};
    REQUIRE(v.mkdir(parent, name, 0755, 0, 0, st) == 0);
    return st.st_ino;
}

Ino make_file(Volume& v, Ino parent, const std::string& name) {
    struct stat st {};
    REQUIRE(v.create(parent, name, 0644, 0, 0, st) == 0);
    return st.st_ino;
}

void write_text(Volume& v, Ino ino, std::uint64_t offset, const std::string& text) {
    REQUIRE(v.open_file(ino) == 0);
    REQUIRE(v.write(ino, offset, text.data(), text.size()) == 0);
    v.close_file(ino);
}

std::string content(Volume& v, Ino ino) {
    struct stat st {};
    REQUIRE(v.getattr(ino, st) == 0);
    std::string out;
    REQUIRE(v.read(ino, 0, static_cast<std::size_t>(st.st_size), out) == 0);
    return out;
}

std::optional<Ino> lookup(Volume& v, Ino parent, const std::string& name) {
    struct stat st {};
    if (v.lookup(parent, name, st) != 0) {
        return std::nullopt;
    }
    return st.st_ino;
}

// What sector `s` may hold after torn_outcome's writes: the synced 'o', or what one of
// the writes over it left; past the old end, 'c' or the zeros of a hole.
std::string allowed_in_sector(std::size_t s) {
    if (s < 2) {
        return "oa";
    }
    if (s == 2) {
        return "oab";
    }
    if (s < 6) {
        return "ob";
    }
    return s < 8 ? "o" : std::string("c\0", 2);
}

// A durable file of `sectors` sectors of 'o', then `writes` unsynced writes over it.
std::string torn_outcome(const std::string& backing, std::uint64_t seed, CutStats& stats) {
    {
        auto v = boot(backing);
        const Ino f = make_file(*v, kRootIno, "f");
        write_text(*v, f, 0, std::string(8 * kSector, 'o'));
        REQUIRE(v->fsync_file(f) == 0);
        REQUIRE(v->fsync_dir(kRootIno) == 0);
        write_text(*v, f, 0, std::string(3 * kSector, 'a'));
        write_text(*v, f, 2 * kSector, std::string(4 * kSector, 'b'));
        write_text(*v, f, 8 * kSector, std::string(2 * kSector, 'c')); // grows the file
        REQUIRE(v->cut(seed, kSector, stats) == 0);
    }
    auto v = boot(backing);
    const auto f = lookup(*v, kRootIno, "f");
    REQUIRE(f.has_value());
    return content(*v, *f);
}

TEST_CASE("a cut drops unsynced data and entries, keeps fsynced ones, and the next boot "
          "sees exactly that") {
    TempDir dir;
    {
        auto v = boot(dir.path());
        const Ino kept = make_file(*v, kRootIno, "kept \n odd");
        write_text(*v, kept, 0, "synced");
        REQUIRE(v->fsync_file(kept) == 0);
        const Ino sub = make_dir(*v, kRootIno, "sub");
        REQUIRE(v->fsync_dir(kRootIno) == 0);
        write_text(*v, kept, 6, " and not");         // unsynced data
        const Ino lost = make_file(*v, sub, "lost"); // sub never fsynced
        write_text(*v, lost, 0, "x");
        REQUIRE(v->fsync_file(lost) == 0);
        struct stat st {};
        REQUIRE(v->setattr(kept, SetAttr{.size = 2}, st) == 0);
        CutStats stats;
        REQUIRE(v->cut(std::nullopt, kSector, stats) == 0);
        CHECK(stats.entries_dropped == 1);
        CHECK(stats.inodes_dropped == 1);
        CHECK(stats.pieces_kept == 0);
    }
    auto v = boot(dir.path());
    const auto kept = lookup(*v, kRootIno, "kept \n odd");
    REQUIRE(kept.has_value());
    CHECK(content(*v, *kept) == "synced"); // neither the write nor the truncate after it
    const auto sub = lookup(*v, kRootIno, "sub");
    REQUIRE(sub.has_value());
    CHECK_FALSE(lookup(*v, *sub, "lost").has_value());
}

TEST_CASE("a rename is durable at its destination once the destination is fsynced, and "
          "gone from its source once the source is") {
    TempDir dir;
    Ino file = 0;
    {
        auto v = boot(dir.path());
        const Ino a = make_dir(*v, kRootIno, "a");
        const Ino b = make_dir(*v, kRootIno, "b");
        file = make_file(*v, a, "f");
        REQUIRE(v->fsync_dir(a) == 0);
        REQUIRE(v->fsync_dir(kRootIno) == 0);
        REQUIRE(v->rename(a, "f", b, "g", false) == 0);
        REQUIRE(v->fsync_dir(b) == 0); // the destination only
        CutStats stats;
        REQUIRE(v->cut(std::nullopt, kSector, stats) == 0);
    }
    auto v = boot(dir.path());
    const Ino a = *lookup(*v, kRootIno, "a");
    const Ino b = *lookup(*v, kRootIno, "b");
    CHECK(lookup(*v, b, "g") == file);
    CHECK(lookup(*v, a, "f") == file); // the source was not fsynced: both names, one inode
    struct stat st {};
    REQUIRE(v->getattr(file, st) == 0);
    CHECK(st.st_nlink == 2);

    REQUIRE(v->rename(b, "g", kRootIno, "top", false) == 0);
    REQUIRE(v->fsync_dir(b) == 0); // now the source only
    CutStats stats;
    REQUIRE(v->cut(std::nullopt, kSector, stats) == 0);
    v = boot(dir.path());
    CHECK_FALSE(lookup(*v, kRootIno, "top").has_value());
    CHECK_FALSE(lookup(*v, b, "g").has_value());
    CHECK(lookup(*v, a, "f") == file);
}

TEST_CASE("a torn cut keeps each sector either as synced or as some unsynced write left "
          "it, and one seed always gives the same result") {
    std::set<std::string> outcomes;
    std::uint64_t kept_total = 0;
    std::uint64_t dropped_total = 0;
    for (std::uint64_t seed = 1; seed <= 40; ++seed) {
        TempDir first;
        TempDir second;
        CutStats stats;
        CutStats again;
        const std::string got = torn_outcome(first.path(), seed, stats);
        CHECK(torn_outcome(second.path(), seed, again) == got);
        CHECK(stats.files_cut == 1);
        CHECK(stats.pieces_kept + stats.pieces_dropped == 9); // 3 + 4 + 2 sectors
        kept_total += stats.pieces_kept;
        dropped_total += stats.pieces_dropped;
        REQUIRE(got.size() >= 8 * kSector);
        REQUIRE(got.size() <= 10 * kSector);
        for (std::size_t s = 0; s < got.size() / kSector; ++s) {
            const std::string sector = got.substr(s * kSector, kSector);
            CAPTURE(seed);
            CAPTURE(s);
            CHECK(sector.find_first_not_of(sector[0]) == std::string::npos); // never torn within
            CHECK(allowed_in_sector(s).find(sector[0]) != std::string::npos);
        }
        outcomes.insert(got);
    }
    CHECK(kept_total > 0);
    CHECK(dropped_total > 0);
    CHECK(outcomes.size() > 10); // the seed matters
}

} // namespace
} // namespace powercut
