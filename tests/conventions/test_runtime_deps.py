"""Every third-party module the gateway imports is a runtime dependency in pyproject.toml.

A module imported only inside a function (lazily, or in a ``try``) still counts: it runs in
production, so a plain ``pip install`` must bring it. ``cryptography`` once sat only in the
``test`` extra, and an SNMPv3 user with DES/AES privacy passed ``check-config`` and then
crashed ``gateway run``; this test names such gaps before a user finds them.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWN = ("gateway", "adapters", "rules")

#: Modules the gateway may import without depending on them: each is only probed for, inside
#: ``try: … except ImportError`` (checked below), and nothing breaks without it.
OPTIONAL = {
    # adapters.snmp.mibs.pysmi_available() only reports whether the MIB text compiler is
    # installed; the gateway loads precompiled MIBs and never needs pysmi itself.
    "pysmi": "probe only (adapters/snmp/mibs.py pysmi_available)",
}

_IMPORT_ERRORS = {"ImportError", "ModuleNotFoundError"}


def _normalise(name: str) -> str:
    """PEP 503 name normalisation: ``Foo_Bar.baz`` → ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _catches_import_error(node: ast.Try) -> bool:
    for h in node.handlers:
        types = h.type.elts if isinstance(h.type, ast.Tuple) else [h.type]
        if h.type is None or any(isinstance(t, ast.Name) and t.id in _IMPORT_ERRORS for t in types):
            return True
    return False


def _imports(tree: ast.AST, guarded: bool = False) -> Iterator[tuple[str, int, bool]]:
    """(top-level module, line, inside a try that catches ImportError) for every absolute
    import anywhere in ``tree``: module level, functions, ``try`` blocks, ``import_module("x")``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name.split(".")[0], node.lineno, guarded
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0], node.lineno, guarded
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in {"import_module", "__import__"}))):
            yield node.args[0].value.split(".")[0], node.lineno, guarded
        if isinstance(node, ast.Try):
            inner = guarded or _catches_import_error(node)
            for child in node.body:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), inner)
            for part in (*node.handlers, *node.orelse, *node.finalbody):
                yield from _imports(ast.Module(body=[part], type_ignores=[]), guarded)
        else:
            yield from _imports(node, guarded)


def third_party_imports() -> dict[str, list[tuple[str, bool]]]:
    """Top-level third-party module → [("path:line", guarded), …] over gateway/, adapters/, rules/."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for pkg in OWN:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text("utf-8"), str(path))
            for mod, line, guarded in _imports(tree):
                if mod in sys.stdlib_module_names or mod in OWN or mod == "__future__":
                    continue
                found.setdefault(mod, []).append((f"{path.relative_to(ROOT)}:{line}", guarded))
    return found


def declared_dependencies() -> set[str]:
    """Normalised distribution names of ``[project].dependencies`` (markers and versions dropped)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    names = set()
    for spec in project["dependencies"]:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        assert m, f"pyproject.toml: cannot read the dependency {spec!r}"
        names.add(_normalise(m.group(1)))
    return names


def test_the_scan_sees_lazy_and_guarded_imports() -> None:
    src = ("import a.b\nfrom c.d import e\ndef f():\n    import g\n    try:\n        import h\n"
           "    except ImportError:\n        import i\n    importlib.import_module('j.k')\n")
    got = {(m, g) for m, _, g in _imports(ast.parse(src))}
    assert got == {("a", False), ("c", False), ("g", False), ("h", True), ("i", False), ("j", False)}


def test_every_imported_distribution_is_a_runtime_dependency() -> None:
    declared = declared_dependencies()
    dists = packages_distributions()
    problems = []
    for mod, sites in sorted(third_party_imports().items()):
        where = ", ".join(s for s, _ in sites)
        if mod in OPTIONAL:
            unguarded = [s for s, g in sites if not g]
            if unguarded:
                problems.append(f"{mod} is listed as optional but imported without an ImportError guard at "
                                f"{', '.join(unguarded)}: make it a dependency")
            continue
        candidates = {_normalise(d) for d in dists.get(mod, [])}
        if not candidates:
            problems.append(f"{mod} (imported at {where}) is not installed in the test environment, "
                            f"so no distribution provides it: add it to [project].dependencies")
        elif not candidates & declared:
            problems.append(f"{mod} (imported at {where}) comes from {' or '.join(sorted(candidates))}, "
                            f"which is not in [project].dependencies")
    assert not problems, "runtime imports missing from pyproject.toml:\n  " + "\n  ".join(problems)


def test_optional_modules_are_still_imported() -> None:
    stale = set(OPTIONAL) - set(third_party_imports())
    assert not stale, f"OPTIONAL lists modules nothing imports any more: {sorted(stale)}"
