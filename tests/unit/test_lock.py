"""The data dir lock (gateway.runtime.lock): one holder at a time, named in the lock file,
free again the moment the holder lets go or dies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.runtime.lock import (
    CLI,
    DAEMON,
    LOCK_FILE,
    DataDirBusy,
    DataDirLock,
    Holder,
    describe_os_error,
    holder,
)
from tests.helpers import ROOT, wait_until


def test_one_holder_at_a_time_and_named(tmp_path: Path) -> None:
    d = tmp_path / "var"
    assert holder(d) is None  # no data dir yet: nobody
    first = DataDirLock(d, DAEMON)
    first.acquire()
    try:
        assert (d / LOCK_FILE).read_text() == f"{os.getpid()} daemon\n"
        assert holder(d) == Holder(os.getpid(), DAEMON)
        with pytest.raises(DataDirBusy) as e:
            DataDirLock(d, CLI).acquire()
        assert e.value.holder == Holder(os.getpid(), DAEMON)
        assert str(e.value) == f"data dir {d} is in use by a gateway daemon (pid {os.getpid()}); one gateway per data dir"
    finally:
        first.release()
    assert holder(d) is None
    with DataDirLock(d, CLI):
        assert holder(d) == Holder(os.getpid(), CLI)


def test_a_killed_holder_frees_it_at_once(tmp_path: Path) -> None:
    d = tmp_path / "var"
    code = ("import sys, time; from pathlib import Path; from gateway.runtime.lock import DataDirLock; "
            "DataDirLock(Path(sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(60)")
    with subprocess.Popen([sys.executable, "-c", code, str(d)], stdout=subprocess.PIPE, text=True, cwd=ROOT) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
            assert holder(d) == Holder(proc.pid, DAEMON)
            with pytest.raises(DataDirBusy):
                DataDirLock(d).acquire()
        finally:
            proc.kill()
    wait_until(lambda: holder(d) is None, 5)  # no stale lock: nothing to clean up
    with DataDirLock(d):
        assert holder(d) == Holder(os.getpid(), DAEMON)


def test_a_cli_holder_is_waited_for(tmp_path: Path) -> None:
    """A daemon starting while a CLI command holds the lock (for a moment) waits for it."""
    d = tmp_path / "var"
    code = ("import sys, time; from pathlib import Path; from gateway.runtime.lock import DataDirLock; "
            "lk = DataDirLock(Path(sys.argv[1]), 'cli'); lk.acquire(); print('locked', flush=True); "
            "sys.stdin.readline(); lk.release(); time.sleep(60)")
    with subprocess.Popen([sys.executable, "-c", code, str(d)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, cwd=ROOT) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
            with pytest.raises(DataDirBusy) as e:
                DataDirLock(d).acquire(wait_for_cli=0.0)
            assert e.value.holder == Holder(proc.pid, CLI) and "a gateway command" in str(e.value)
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
            lock = DataDirLock(d)
            lock.acquire(wait_for_cli=30.0)
            lock.release()
        finally:
            proc.kill()


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_a_data_dir_that_is_a_file_is_an_os_error_in_words(tmp_path: Path, where: str) -> None:
    f = tmp_path / "var"
    f.write_text("not a directory")
    with pytest.raises(OSError) as e:
        DataDirLock(f if where == "file" else f / "sub").acquire()
    assert describe_os_error(e.value) == "is a file (or lies under one), not a directory"
