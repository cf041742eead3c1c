"""Imports point one way (STYLE.md): leaf modules import only the stdlib, rules/ and the pure
core do no I/O, adapters and rules never import each other or the daemon."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LEAF = {"gateway.model", "gateway.clock", "gateway.errors", "gateway.durations"}
#: The pure core: everything in gateway/core/.
PURE_PREFIX = "gateway.core"
IO_MODULES = {"asyncio", "socket", "sqlite3", "httpx", "threading", "subprocess", "urllib", "http", "aiomqtt", "paho"}


def _modules(pkg: str) -> list[tuple[str, Path]]:
    out = []
    for p in sorted((ROOT / pkg).rglob("*.py")):
        rel = p.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), p))
    return out


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


ALL = _modules("gateway") + _modules("adapters") + _modules("rules")


@pytest.mark.parametrize("mod, path", [m for m in ALL if m[0] in LEAF], ids=lambda x: str(x) if isinstance(x, str) else "")
def test_leaf_modules_import_only_stdlib(mod: str, path: Path) -> None:
    bad = {i for i in _imports(path) if i.split(".")[0] in {"gateway", "adapters", "rules", "pydantic"}}
    assert not bad, f"{mod} is a leaf but imports {bad}"


@pytest.mark.parametrize("mod, path", [m for m in ALL if m[0].startswith("rules") or m[0].startswith(PURE_PREFIX)],
                         ids=lambda x: str(x) if isinstance(x, str) else "")
def test_pure_modules_do_no_io(mod: str, path: Path) -> None:
    bad = {i for i in _imports(path) if i.split(".")[0] in IO_MODULES}
    assert not bad, f"{mod} must stay pure but imports {bad}"


@pytest.mark.parametrize("mod, path", [m for m in ALL if m[0].startswith(("rules", "adapters"))],
                         ids=lambda x: str(x) if isinstance(x, str) else "")
def test_adapters_and_rules_know_only_the_event_model(mod: str, path: Path) -> None:
    other = "rules" if mod.startswith("adapters") else "adapters"
    bad = {i for i in _imports(path) if i.split(".")[0] == other or (i.startswith("gateway") and i not in LEAF and i != "gateway")}
    assert not bad, f"{mod} imports {bad}"


def test_only_config_and_app_read_the_adapter_registry() -> None:
    """The config reads each kind's name and model from it, the composition root its factories."""
    users = []
    for mod, path in ALL:
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "adapters" and any(a.name == "REGISTRY" for a in node.names):
                users.append(mod)
    assert sorted(users) == ["gateway.app", "gateway.config"]


def test_pure_core_does_not_read_the_wall_clock() -> None:
    for mod, path in ALL:
        if mod.startswith((PURE_PREFIX, "rules")):
            text = path.read_text("utf-8")
            assert "time.time(" not in text and "datetime.now(" not in text, f"{mod} reads the wall clock"
