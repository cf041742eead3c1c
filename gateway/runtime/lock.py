"""The data directory's lock: one writer process per store (the daemon, or a CLI acting
while no daemon runs), held for the writer's life and gone the moment it dies.

``<data_dir>/gateway.lock`` is ``flock``-ed exclusively; after locking, the holder writes
``"<pid> <kind>"`` into it so that others can say who has it. A process killed with -9
releases it at once (the kernel drops the lock with the last file descriptor), so there is
never a stale lock to clean up.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from gateway.errors import GatewayError

__all__ = [
    "CLI", "DAEMON", "DIR_MODE", "FILE_MODE", "LOCK_FILE", "DataDirBusy", "DataDirLock", "Holder", "describe_os_error",
    "holder", "make_data_dir", "write_private",
]

#: Modes of what the gateway creates in its data dir: the owner writes, its group (the
#: service's own) may read, other local users see nothing (tickets, keys, engine IDs).
DIR_MODE = 0o750
FILE_MODE = 0o640


def make_data_dir(path: Path) -> None:
    """Create the data dir (and missing parents) with :data:`DIR_MODE`; an existing one is left as it is."""
    if not path.is_dir():
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(path, DIR_MODE)  # mkdir's mode is cut by the umask, never widened: set it exactly


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (created with :data:`FILE_MODE`, or truncated)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


LOCK_FILE = "gateway.lock"

#: What a holder is: the daemon, or a CLI command acting as the writer while no daemon runs.
DAEMON, CLI = "daemon", "cli"

# Between a holder's flock and its writing of "<pid> <kind>", and while another process
# peeks (holder()), the lock is held by someone whose name cannot be read yet: retry that long.
_SETTLE = 2.0


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a data dir: ``pid`` (0 if it could not be read) and ``kind`` (daemon or cli)."""

    pid: int
    kind: str


class DataDirBusy(GatewayError):
    """Another process holds the data dir's lock."""

    def __init__(self, data_dir: Path, who: Holder) -> None:
        self.data_dir = data_dir
        self.holder = who
        what = "a gateway daemon" if who.kind == DAEMON else "a gateway command"
        pid = f"pid {who.pid}" if who.pid else "pid unknown"
        super().__init__(f"data dir {data_dir} is in use by {what} ({pid}); one gateway per data dir")


def _read(fd: int) -> Holder:
    os.lseek(fd, 0, os.SEEK_SET)
    parts = os.read(fd, 64).decode("ascii", "replace").split()
    try:
        pid = int(parts[0]) if parts else 0
    except ValueError:
        pid = 0
    return Holder(pid, parts[1] if len(parts) > 1 else DAEMON)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holder(data_dir: Path) -> Holder | None:
    """Who holds ``data_dir`` now, or ``None`` when nobody does (no lock file, or unlocked)."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        deadline = time.monotonic() + _SETTLE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                who = _read(fd)
                if _alive(who.pid) or time.monotonic() > deadline:
                    return who
                time.sleep(0.01)  # locked, name not written yet: the holder is starting
                continue
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
    finally:
        os.close(fd)


class DataDirLock:
    """The exclusive lock on a data dir, for one process.

    Args:
        data_dir: the directory (created if missing).
        kind: ``"daemon"`` or ``"cli"``, written next to the pid for others to read.

    ``acquire`` raises :class:`DataDirBusy` when another process holds it, and ``OSError``
    when the directory cannot be created or written.
    """

    def __init__(self, data_dir: Path, kind: str = DAEMON) -> None:
        self.data_dir = data_dir
        self.kind = kind
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, wait_for_cli: float = 0.0) -> None:
        """Take the lock, or raise :class:`DataDirBusy`.

        Args:
            wait_for_cli: seconds to wait while the holder is a CLI command (they last a
                moment); a daemon holder is refused at once.
        """
        make_data_dir(self.data_dir)
        # No O_TRUNC: the holder's name must stay readable until we have the lock.
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            settle = time.monotonic() + _SETTLE
            patience = time.monotonic() + wait_for_cli
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    who = _read(fd)
                    now = time.monotonic()
                    if not _alive(who.pid) and now < settle:
                        pass  # a holder still writing its name, or a peek (holder()): a moment
                    elif who.kind == CLI and now < patience:
                        pass
                    else:
                        raise DataDirBusy(self.data_dir, who) from None
                    time.sleep(0.02)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {self.kind}\n".encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (closing the descriptor releases it; the file stays)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def describe_os_error(e: OSError) -> str:
    """Why a data dir cannot be used, in words (no bare ``[Errno n]``)."""
    if e.errno in (errno.EEXIST, errno.ENOTDIR):
        return "is a file (or lies under one), not a directory"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "is not writable (permission denied)"
    if e.errno == errno.EROFS:
        return "is on a read-only file system"
    return e.strerror or str(e)
