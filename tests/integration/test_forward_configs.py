"""The shipped example configs for a site (edge) and a central NOC pass ``check-config``,
and a ``[forward]`` mistake is one line naming the file and the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT


@pytest.mark.parametrize("name", ["edge", "central"])
def test_shipped_config_passes_check_config(name: str) -> None:
    r = subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c", str(ROOT / "deploy" / f"{name}.toml")],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("OK:")


def test_an_edge_without_a_site_is_one_clear_line(tmp_path: Path) -> None:
    text = (ROOT / "deploy" / "edge.toml").read_text("utf-8").replace('site = "mine-a"\n# Rows', "# Rows", 1)
    cfg = tmp_path / "edge.toml"
    cfg.write_text(text, "utf-8")
    r = subprocess.run([sys.executable, "-m", "gateway", "check-config", "-c", str(cfg)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 2
    out = (r.stdout + r.stderr).strip()
    assert "Traceback" not in out and str(cfg) in out and "forward" in out and "site" in out, out
