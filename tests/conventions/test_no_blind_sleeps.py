"""Tests wait for conditions, not for time.

A test that sleeps and then asserts is slow on a fast machine and flaky on a busy one; it
waits with ``eventually`` / ``wait_until`` (tests/helpers.py), an event or a future instead.
Where time itself must pass (a device going silent, a load generator's pace, a crash at a
random instant) the sleep stays, with a ``# why:`` comment on the same line or in the comment
block right above it. The polling loops that implement waiting are allowed by name below.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent

#: (file, function) → why that sleep needs no comment: the polling loops waiting is made of.
ALLOWED = {
    ("tests/helpers.py", "eventually"): "the polling interval of the condition wait itself",
    ("tests/helpers.py", "wait_until"): "the polling interval of the condition wait itself",
    ("tests/fixtures/mqtt_broker.py", "MosquittoProcess.start"): "polls until the broker answers MQTT",
    ("tests/fixtures/tsdb.py", "VictoriaMetricsProcess.start"): "polls /health until the server is up",
    ("tests/fixtures/tsdb.py", "export"): "polls the export API until the rows are searchable",
    ("tests/fixtures/helpdesk.py", "HelpdeskServer.start"): "polls the API until django-helpdesk answers",
}

SLEEP_MODULES = {"time", "asyncio"}


def sleeps(source: str) -> list[tuple[int, str, str]]:
    """Every reference to ``time.sleep`` / ``asyncio.sleep`` (called or passed on) and every
    ``sleep`` imported from them: (line, enclosing function's qualified name, what)."""
    tree = ast.parse(source)
    imported = {a.asname or a.name for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module in SLEEP_MODULES
                for a in node.names if a.name == "sleep"}
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = [*scope, node.name]
        if (isinstance(node, ast.Attribute) and node.attr == "sleep" and isinstance(node.value, ast.Name)
                and node.value.id in SLEEP_MODULES):
            found.append((node.lineno, ".".join(scope), f"{node.value.id}.sleep"))
        elif isinstance(node, ast.Name) and node.id in imported and isinstance(node.ctx, ast.Load):
            found.append((node.lineno, ".".join(scope), "sleep"))
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(tree, [])
    return found


def explained(lines: list[str], lineno: int) -> bool:
    """A ``# why:`` comment on line ``lineno`` (1-based) or in the comment lines right above it."""
    if "# why:" in lines[lineno - 1]:
        return True
    i = lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#"):
        if "# why:" in lines[i]:
            return True
        i -= 1
    return False


def _files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if ".venv" not in p.parts)


def test_every_sleep_in_the_tests_says_why_time_must_pass() -> None:
    blind = []
    for path in _files():
        rel = path.relative_to(ROOT).as_posix()
        source = path.read_text("utf-8")
        lines = source.splitlines()
        for lineno, func, what in sleeps(source):
            if (rel, func) in ALLOWED or explained(lines, lineno):
                continue
            blind.append(f"{rel}:{lineno} in {func or '<module>'}: {what}")
    assert not blind, (
        "sleeps without a '# why:' comment (wait for a condition instead: tests/helpers.py's "
        "eventually / wait_until, an event, a future):\n  " + "\n  ".join(blind)
    )


def test_the_allowlist_names_polling_loops_that_exist() -> None:
    present = set()
    for path in _files():
        rel = path.relative_to(ROOT).as_posix()
        present.update((rel, func) for _, func, _ in sleeps(path.read_text("utf-8")))
    stale = set(ALLOWED) - present
    assert not stale, f"allowlisted, but no sleep there any more: {sorted(stale)}"


def test_the_check_sees_blind_sleeps_and_accepts_explained_ones() -> None:
    source = '''
import asyncio
import time
from time import sleep as nap


async def blind():
    await asyncio.sleep(0.1)
    return None


def explained_inline():
    time.sleep(1)  # why: the device must go silent for a second


def explained_above():
    # Several lines of context first.
    # why: a load generator's pace
    time.sleep(0.01)


def aliased():
    nap(2)


def passed_on(loop):
    loop.run_in_executor(None, time.sleep, 1)


def not_a_sleep(clock):
    clock.sleep(5)
'''
    lines = source.splitlines()
    got = [(func, what, explained(lines, lineno)) for lineno, func, what in sleeps(source)]
    assert got == [
        ("blind", "asyncio.sleep", False),
        ("explained_inline", "time.sleep", True),
        ("explained_above", "time.sleep", True),
        ("aliased", "sleep", False),
        ("passed_on", "time.sleep", False),
    ]
