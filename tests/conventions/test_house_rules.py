"""House rules checked by tools (STYLE.md): import-linter's layer, independence, no-cycle and
no-I/O contracts (``[tool.importlinter]`` in pyproject.toml), ``mypy --strict`` on the typed
part of the code (``[tool.mypy]``), and ruff's rule set (``[tool.ruff.lint]``).

Each runs as the developer would run it, from the project root, so a failure here prints
exactly what the tool printed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    exe = BIN / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: it is part of the test extra (pip install -e '.[test]')")
    return found


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_import_contracts_hold() -> None:
    r = _run(_tool("lint-imports"), "--no-cache")
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "broken" not in r.stdout.split("Contracts:")[-1].split("\n")[0] or " 0 broken" in r.stdout


def test_mypy_strict_passes() -> None:
    r = _run(_tool("mypy"))
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "Success" in r.stdout


def test_mypy_keeps_events_immutable() -> None:
    """``Event`` is a plain slotted class at run time (``gateway.model.value``: a frozen
    dataclass costs a microsecond per event); the type checker is what keeps it a value."""
    snippet = "from gateway.model import Event\ne = Event(0.0, 's', 'd', 'n')\ne.ts = 1.0\n"
    r = _run(_tool("mypy"), "--config-file=", "--strict", "--no-incremental", "-c", snippet)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert 'Property "ts" defined in "Event" is read-only' in r.stdout, r.stdout


def test_ruff_passes() -> None:
    r = _run(_tool("ruff"), "check", "--no-cache", ".")
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
