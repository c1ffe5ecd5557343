"""Kernel uids are unique on the host, across sandbox servers, for as long as each kernel lives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from deepeyes_cli.sandbox.state import UidLeases


def test_two_servers_never_hand_out_the_same_uid(tmp_path: Path) -> None:
    a, b = UidLeases(70000, tmp_path), UidLeases(70000, tmp_path)
    assert [a.take(), a.take()] == [70000, 70001]
    assert b.take() == 70002  # a holds the first two
    a.release(70000)
    assert b.take() == 70000  # free again once its kernel is gone
    a.close()
    assert b.take() == 70001
    b.close()


def test_a_uid_held_by_another_process_is_skipped_until_it_exits(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(tmp_path / "70000")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        leases = UidLeases(70000, tmp_path)
        assert leases.take() == 70001
    finally:
        holder.kill()  # like a server killed with SIGKILL: its locks go with it
        holder.wait()
    assert leases.take() == 70000
    leases.close()
