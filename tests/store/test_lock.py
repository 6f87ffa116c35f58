"""The writer lock: a status poll never takes it (so it never makes a real writer fail), and a forked child of the
holder does not keep it after the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from probe.errors import RunLockedError
from probe.store.lock import LOCK_NAME, DirectoryLock, _held_in_proc_locks, is_locked
from tests.conftest import REPO

POLLER = (
    "import sys, pathlib\n"
    "from probe.store.lock import is_locked\n"
    "folder, stop = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])\n"
    "print('ready', flush=True)\n"
    "seen, polls = set(), 0\n"
    "while not stop.exists():\n"
    "    for _ in range(100):\n"
    "        seen.add(is_locked(folder))\n"
    "    polls += 100\n"
    "print(polls, sorted(seen), flush=True)\n"
)


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs /proc/locks (Linux)")
def test_is_locked_reads_proc_locks_and_never_takes_the_lock(tmp_path):
    lock = DirectoryLock(tmp_path)
    lock.acquire()
    st = os.stat(tmp_path / LOCK_NAME)
    assert _held_in_proc_locks(st) is True and is_locked(tmp_path)  # answered by /proc/locks, not by a try-lock
    lock.release()
    assert _held_in_proc_locks(st) is False and not is_locked(tmp_path)


def test_a_tight_polling_loop_never_makes_a_real_writer_fail(tmp_path):
    """A writer takes and drops the lock 1500 times while another process polls ``is_locked`` as fast as it can:
    every acquire succeeds (a poll that took the lock, even briefly, made 1-10% of them fail)."""
    stop = tmp_path / "stop"
    poller = subprocess.Popen([sys.executable, "-c", POLLER, str(tmp_path), str(stop)], stdout=subprocess.PIPE,
                              text=True, cwd=REPO)
    try:
        assert poller.stdout.readline().strip() == "ready"
        failures = 0
        lock = DirectoryLock(tmp_path)
        for _ in range(1500):
            try:
                lock.acquire()
            except RunLockedError:
                failures += 1
                continue
            lock.release()
        stop.touch()
        polls, seen = poller.stdout.readline().split(" ", 1)
    finally:
        poller.kill()
        poller.wait()
    assert int(polls) >= 100  # the poller ran all along
    assert seen.strip() == "[False, True]"  # the poller did see the writer at work
    assert failures == 0


FORKING_HOLDER = (
    "import os, sys, time\n"
    "from probe.store.lock import DirectoryLock\n"
    "DirectoryLock(sys.argv[1]).acquire()\n"
    "child = os.fork()\n"
    "if child == 0:\n"
    "    time.sleep(120)\n"
    "    os._exit(0)\n"
    "print(child, flush=True)\n"
    "time.sleep(120)\n"
)


def test_a_forked_child_does_not_keep_a_killed_writers_lock(tmp_path):
    """Like a DataLoader worker forked by the trainer: the child lives on after SIGKILL of the holder, the lock is
    free at once."""
    holder = subprocess.Popen([sys.executable, "-c", FORKING_HOLDER, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True, cwd=REPO)
    child = int(holder.stdout.readline())
    try:
        assert is_locked(tmp_path)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        assert not is_locked(tmp_path)
        DirectoryLock(tmp_path).acquire().release()  # a new writer gets it
        os.kill(child, 0)  # the child still runs
        with open(f"/proc/{child}/stat") as fh:
            assert fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    finally:
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass
