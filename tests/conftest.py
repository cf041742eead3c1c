"""Shared pytest configuration: fixture plugins for the real peers the tests talk to, and a
leak check after every test."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import os
import sys
import threading
import warnings
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.fixtures.netsnmp",
    "tests.fixtures.mqtt_broker",
    "tests.fixtures.helpdesk",
    "tests.fixtures.tsdb",
    "tests.fixtures.notify_peers",
    "tests.fixtures.natsjs",
]


#: A test still running after this many seconds has its threads' and asyncio tasks' stacks
#: written to stderr; pytest-timeout (``timeout`` in pyproject.toml) fails it later. A hang then
#: names where it waits, and the rest of the run goes on.
HANG_DUMP_S = 240.0


def _dump_stacks(name: str) -> None:
    out = sys.__stderr__
    if out is None:
        return
    print(f"\n=== {name} still running after {HANG_DUMP_S:.0f} s: threads and asyncio tasks ===",
          file=out, flush=True)
    faulthandler.dump_traceback(file=out, all_threads=True)
    # The test's loop runs in the main thread; found by looking (diagnostics only).
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()]
    for loop in loops:
        for task in list(asyncio.all_tasks(loop)):
            print(f"--- {task!r}", file=out)
            task.print_stack(limit=12, file=out)
    out.flush()


@pytest.fixture(autouse=True)
def _hang_dump(request: pytest.FixtureRequest) -> Iterator[None]:
    done = threading.Event()

    def watch() -> None:
        if not done.wait(HANG_DUMP_S):
            _dump_stacks(request.node.nodeid)

    threading.Thread(target=watch, name="hang-dump", daemon=True).start()
    yield
    done.set()


def _open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # no /proc: collect after every test
        return None


@pytest.fixture(autouse=True)
def _finalize_leaks() -> Iterator[None]:
    """Fail the test that leaked a socket, file or transport, not whichever test runs later.

    An unclosed socket caught in a reference cycle is only finalised by the next garbage
    collection, which can come several tests later: its ``ResourceWarning`` then fails an
    innocent test (under load, in another module). When a test ends with more descriptors open
    than it began with, collecting now runs those finalisers, and pytest's unraisable-exception
    hook, which reports after fixture teardown, pins the warning on this test. (A collection
    after every test would cost ~0.1 s each; counting descriptors costs microseconds.) Run with
    ``PYTHONTRACEMALLOC=20`` to see where the leaked object was allocated.
    """
    before = _open_fds()
    yield
    after = _open_fds()
    if before is None or after is None or after > before:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            gc.collect()
