"""The power-cut filesystem from the e2e tests' side (standard library only).

PowercutFs drives tests/support/powercut_fs: a FUSE filesystem whose volume lives in a
backing directory and which keeps apart what has not been fsynced. boot() starts a
powercut_fs process and waits until the mount answers; cut() is the power cut (SIGUSR1,
or SIGUSR2 to keep a seeded random torn part of the unsynced writes): the process stops
serving at once, unmounts, throws the unsynced part away and exits; the next boot() is a
new process on the durable state. stop() is a clean unmount (everything kept).

Kill every process using the mount before cut(): the filesystem process is the only
place unsynced data lives (write-through, no writeback cache), so what it drops is
exactly what a power cut loses, and nothing is left in a page cache to survive it.
"""
import os
import re
import select
import signal
import subprocess
import time
import unittest

from harness import BUILD_DIR, wait_for

POWERCUT_FS = os.path.join(BUILD_DIR, "powercut_fs")
MOUNT_TYPE = "fuse.powercut"  # fuse.<subtype> in /proc/self/mounts
BOOT_TIMEOUT = 20.0
CUT_TIMEOUT = 60.0


def skip_unless_available():
    """Raises unittest.SkipTest when this build or machine cannot mount the filesystem."""
    if not os.path.exists(POWERCUT_FS):
        raise unittest.SkipTest(f"{POWERCUT_FS} not built (libfuse3-dev missing at configure)")
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        raise unittest.SkipTest("the power-cut filesystem needs root and /dev/fuse")


def mounted_kind(path):
    """The filesystem type /proc/self/mounts gives for `path`, or None."""
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[1] == path:
                return fields[2]
    return None


class PowercutFs:
    def __init__(self, workdir, name="powercut"):
        self.backing = os.path.join(workdir, name + "-backing")
        self.mountpoint = os.path.join(workdir, name)
        self.log_path = os.path.join(workdir, name + ".log")
        self.proc = None
        self.boots = 0
        os.makedirs(self.backing, exist_ok=True)
        os.makedirs(self.mountpoint, exist_ok=True)

    def path(self, *parts):
        return os.path.join(self.mountpoint, *parts)

    def boot(self, seed=1):
        if mounted_kind(self.mountpoint) is not None:
            raise AssertionError(f"{self.mountpoint} is still mounted")
        self.proc = subprocess.Popen([POWERCUT_FS, self.backing, self.mountpoint,
                                      "--seed", str(seed)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.boots += 1
        line = self._read_line(BOOT_TIMEOUT)
        if "event=mounted" not in line:
            self.proc.kill()
            rest = self.proc.communicate(timeout=10)[0]
            raise AssertionError(f"powercut_fs did not mount: {line}{rest}")
        wait_for(lambda: mounted_kind(self.mountpoint) == MOUNT_TYPE, BOOT_TIMEOUT,
                 what="the powercut_fs mount")
        return self

    def _read_line(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "(no line within %ss)" % timeout
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                return self.proc.stdout.readline()

    def cut(self, torn=False):
        """The power cut. Returns the filesystem's figures (files, pieces_dropped,
        pieces_kept, entries_dropped, inodes_dropped) as a dict of ints."""
        out = self._end(signal.SIGUSR2 if torn else signal.SIGUSR1, "event=cut")
        m = re.search(r"event=cut (.*)", out)
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}

    def stop(self):
        """A clean unmount: everything written so far is kept."""
        if self.proc is not None and self.proc.poll() is None:
            self._end(signal.SIGTERM, "event=stopped")

    def _end(self, sig, expect):
        self.proc.send_signal(sig)
        out = self.proc.communicate(timeout=CUT_TIMEOUT)[0]
        with open(self.log_path, "a") as f:
            f.write(out)
        if self.proc.returncode != 0 or expect not in out:
            raise AssertionError(f"powercut_fs exited {self.proc.returncode}: {out}")
        return out

    def kill(self):
        """Teardown: a clean stop, and the mount gone whatever happened before."""
        try:
            self.stop()
        finally:
            if mounted_kind(self.mountpoint) is not None:
                subprocess.run(["umount", "-l", self.mountpoint], capture_output=True)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
