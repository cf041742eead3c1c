"""Fixtures of the store contract suite: every test runs once per backend in
:data:`tests.store_contract.backends.BACKENDS`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.store import Store
from tests.store_contract.backends import BACKENDS, Backend


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Backend:
    return BACKENDS[request.param]


@pytest.fixture
def location(backend: Backend, tmp_path: Path) -> Iterator[str]:
    loc = backend.location(tmp_path)
    yield loc
    backend.drop(loc)


@pytest.fixture
def open_store(backend: Backend, location: str) -> Iterator[Callable[..., Store]]:
    """Open the test's store (again): each call is a new connection, as a second process
    or a restart would have; all are closed at the end."""
    opened: list[Store] = []

    def open_(**kw: Any) -> Store:
        s = backend.open(location, **kw)
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store: Callable[..., Store]) -> Store:
    return open_store()
