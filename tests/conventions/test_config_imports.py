"""Loading the config loads no client library: integrations own small config modules
(pydantic + stdlib + leaf modules), and ``gateway.config`` assembles them from the
adapter and connector spec tables. Each check runs in a fresh interpreter, where
``sys.modules`` shows exactly what an import pulled in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT

#: Client libraries and servers: the daemon needs them, validating a config must not.
HEAVY = ("aiomqtt", "paho", "httpx", "influxdb_client", "pysnmp", "fastapi", "uvicorn", "starlette", "urllib3")


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(json.loads(r.stdout.splitlines()[-1]))


def _config_modules() -> list[str]:
    """Every config module named by a spec table, plus the timeseries section's."""
    code = (
        "import json\nfrom adapters import REGISTRY\nfrom gateway.delivery.helpdesk import CONNECTORS\n"
        "mods = [s.config_model.__module__ for s in REGISTRY.values()]\n"
        "mods += [s.config_model.__module__ for s in CONNECTORS.values()]\n"
        "print(json.dumps(sorted(set(mods))))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    return [*json.loads(r.stdout), "gateway.timeseries.config"]


@pytest.mark.parametrize("module", ["gateway.config", "adapters", "gateway.delivery.helpdesk", "gateway.timeseries"])
def test_config_imports_no_client_library(module: str) -> None:
    loaded = _loaded_after(f"import {module}")
    assert not loaded & set(HEAVY), f"importing {module} loads {sorted(loaded & set(HEAVY))}"


def test_every_integration_config_module_imports_no_client_library() -> None:
    """Each config module the spec tables name, alone in a fresh interpreter."""
    modules = _config_modules()
    assert len(modules) >= 6  # snmp, mqtt, three help desks, timeseries
    heavy = {m: sorted(_loaded_after(f"import {m}") & set(HEAVY)) for m in modules}
    assert not any(heavy.values()), {m: h for m, h in heavy.items() if h}


def test_loading_the_example_imports_no_client_library() -> None:
    loaded = _loaded_after("from gateway.config import load_config\nload_config('config.example.toml')")
    assert not loaded & set(HEAVY), f"loading the example config loads {sorted(loaded & set(HEAVY))}"


def test_config_module_has_no_import_cycle_with_the_timeseries_sink() -> None:
    """The timeseries section no longer reaches back into gateway.config (no lazy import
    to break a cycle): its module imports only pydantic, stdlib and leaf modules."""
    import ast

    for rel in ("gateway/timeseries/config.py", "gateway/timeseries/lines.py"):
        tree = ast.parse((ROOT / rel).read_text("utf-8"))
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "gateway.config" not in names, f"{rel} imports gateway.config"
