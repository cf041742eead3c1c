"""Shared pytest configuration: fixture plugins for the real peers the tests talk to, and a
leak check after every test."""

from __future__ import annotations

import gc
import os
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
