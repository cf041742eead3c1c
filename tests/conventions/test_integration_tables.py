"""Integrations register in two static tables (``adapters.REGISTRY``, ``CONNECTORS``) and
nowhere else: every row is complete, the config sections follow the tables, the
composition root names no integration, and a new kind is one module plus one row."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adapters import REGISTRY
from gateway.config import AdaptersSection, Config
from gateway.delivery.helpdesk import CONNECTORS
from tests.helpers import ROOT


@pytest.mark.parametrize("kind", list(REGISTRY))
def test_adapter_spec_is_complete(kind: str) -> None:
    spec = REGISTRY[kind]
    assert spec.name == kind
    assert spec.config_model.model_config.get("extra") == "forbid"
    assert "name" in spec.config_model.model_fields, "instances need a name (event source, metrics label)"
    assert spec.config_model.__module__.endswith(".config"), "the model lives in the kind's config module"
    factory = spec.load_factory()
    assert inspect.iscoroutinefunction(factory), f"{spec.factory} must be an async build(configs, ctx)"


@pytest.mark.parametrize("type_name", list(CONNECTORS))
def test_connector_spec_is_complete(type_name: str) -> None:
    spec = CONNECTORS[type_name]
    assert spec.name == type_name
    model = spec.config_model
    assert model.model_config.get("extra") == "forbid"
    assert model.model_fields["type"].default == type_name, "the entry's type literal is the table's key"
    assert "name" in model.model_fields
    assert model.__module__.endswith(".config")
    factory = spec.load_factory()
    for method in ("deliver", "find_remote", "poll_changes", "aclose"):
        assert callable(getattr(factory, method, None)), f"{spec.factory} lacks {method}"


def test_config_sections_follow_the_tables() -> None:
    assert list(AdaptersSection.model_fields) == list(REGISTRY)
    for kind, spec in REGISTRY.items():
        assert AdaptersSection.model_fields[kind].annotation == list[spec.config_model]
    assert Config.model_fields["helpdesk"].annotation is not None
    cfg = Config()
    assert [k for k, _ in cfg.adapters.by_kind()] == list(REGISTRY)


def test_app_names_no_integration() -> None:
    """The composition root builds every kind through the tables: no kind, connector type,
    library or module of one appears in it (comments and docstrings included)."""
    text = (ROOT / "gateway/app.py").read_text("utf-8")
    names = set(REGISTRY) | set(CONNECTORS) | {"django_helpdesk", "mib", "mibs", "aiomqtt", "pysnmp", "httpx",
                                                "influxdb_client"}
    modules = {s.factory.partition(":")[0] for s in [*REGISTRY.values(), *CONNECTORS.values()]}
    found = sorted(n for n in names | modules if re.search(rf"(?<![\w.-]){re.escape(n)}(?![\w-])", text, re.I))
    assert not found, f"gateway/app.py names integrations: {found}"


_DUMMY = '''
"""A test-time integration: an adapter kind and a help-desk connector, one module."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

STARTED: list[str] = []
STOPPED: list[str] = []
DESKS: list[str] = []


class EchoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "echo"
    greeting: str = "hello"


class EchoAdapter:
    def __init__(self, cfg: EchoConfig, state_dir: object) -> None:
        self.name, self.cfg, self.state_dir = cfg.name, cfg, state_dir

    async def start(self, sink: object) -> None:
        STARTED.append(f"{self.name}:{self.cfg.greeting}")

    async def stop(self) -> None:
        STOPPED.append(self.name)

    def stats(self) -> dict[str, int]:
        return {}


async def build(configs, ctx):
    return [EchoAdapter(c, ctx.state_dir) for c in configs]


class NullDeskConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["null-desk"] = "null-desk"
    name: str = "null"


class NullDesk:
    def __init__(self, config: NullDeskConfig) -> None:
        self.name = config.name
        DESKS.append(config.name)

    async def deliver(self, msg):
        raise AssertionError("no tickets in this test")

    async def find_remote(self, key):
        return None

    async def poll_changes(self, remote_ids, since):
        return []

    async def aclose(self) -> None:
        pass
'''

_RUNNER = '''
import asyncio, json, sys

import adapters
import gateway.delivery.helpdesk as helpdesk
import dummy_integration as dummy

# The one row per kind, added before the config and the app are imported (as if written in the table).
adapters.REGISTRY = {**adapters.REGISTRY, "echo": adapters.AdapterSpec("echo", dummy.EchoConfig, "dummy_integration:build")}
helpdesk.CONNECTORS = {**helpdesk.CONNECTORS,
                       "null-desk": helpdesk.ConnectorSpec("null-desk", dummy.NullDeskConfig, "dummy_integration:NullDesk")}

from gateway.app import Gateway
from gateway.config import config_from_dict
from gateway.errors import ConfigError
from tests.helpers import base_config

out = {}
try:
    config_from_dict({"adapters": {"echo": [{"greting": "x"}]}, "helpdesk": [{"type": "null-desk", "nmae": "x"}]},
                     "config.toml")
except ConfigError as e:
    out["errors"] = sorted(str(x) for x in getattr(e, "errors", [e]))

d = base_config(sys.argv[1] + "/var", None)
d["adapters"] = {"echo": [{"name": "e1", "greeting": "hi"}, {"name": "e2"}]}
d["helpdesk"] = [{"type": "null-desk", "name": "nd"}]
cfg = config_from_dict(d, "config.toml", sys.argv[1])


async def main():
    async with Gateway(cfg) as gw:
        out["adapters"] = [a.name for a in gw.adapters]
        out["started"] = list(dummy.STARTED)
    out["stopped"] = list(dummy.STOPPED)
    out["desks"] = list(dummy.DESKS)

asyncio.run(main())
print(json.dumps(out))
'''


def test_a_new_kind_is_one_module_and_one_row(tmp_path: Path) -> None:
    """A dummy adapter kind and connector, added to the tables at test time (in a fresh
    interpreter, before anything reads the tables), validate with file-and-key errors and
    are built, started and stopped by the unchanged composition root."""
    (tmp_path / "dummy_integration.py").write_text(textwrap.dedent(_DUMMY), "utf-8")
    runner = tmp_path / "runner.py"
    runner.write_text(_RUNNER, "utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    r = subprocess.run([sys.executable, str(runner), str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["errors"] == [
        "config.toml: adapters.echo[0].greting: unknown key",
        "config.toml: helpdesk[0].nmae: unknown key",
    ]
    assert out["adapters"] == ["e1", "e2"]
    assert out["started"] == ["e1:hi", "e2:hello"]
    assert out["stopped"] == ["e2", "e1"]  # adapters stop first, in reverse
    assert out["desks"] == ["nd"]
