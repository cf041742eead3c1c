"""``gateway init [DIR]``: the documented example config to start from (shipped inside the
package, so it works from a wheel) and its data dir; never over an existing config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gateway
from gateway.cli import demo
from gateway.config import load_config
from tests.helpers import EXAMPLE

PACKAGED = Path(gateway.__file__).parent / "data" / "config.example.toml"


def gateway_cmd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60, check=False)


def test_the_packaged_example_is_the_documented_one() -> None:
    """gateway/data/config.example.toml ships in the wheel: a link to the top-level one, so the
    two cannot drift apart (the wheel build copies the bytes)."""
    assert PACKAGED.is_symlink()
    assert PACKAGED.read_bytes() == EXAMPLE.read_bytes(), "copy config.example.toml to gateway/data/"
    assert Path(str(demo.EXAMPLE)) == PACKAGED  # the demo reads the packaged copy too


def test_init_writes_the_example_and_a_data_dir_and_never_overwrites(tmp_path: Path) -> None:
    site = tmp_path / "site"
    r = gateway_cmd("init", str(site), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    cfg = site / "config.toml"
    assert cfg.read_bytes() == PACKAGED.read_bytes()
    assert (site / "var").is_dir()
    assert f"wrote {cfg}" in r.stdout
    loaded = load_config(cfg)
    assert loaded.data_path() == site / "var"  # the data dir it made is the config's

    cfg.write_text(cfg.read_text() + "# mine\n")
    r = gateway_cmd("init", str(site), cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.splitlines() == [
        f"error: {cfg} exists already; not overwritten (remove it, or give another directory)"
    ]
    assert cfg.read_text().endswith("# mine\n")


def test_init_defaults_to_the_current_directory(tmp_path: Path) -> None:
    r = gateway_cmd("init", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "config.toml").read_bytes() == PACKAGED.read_bytes() and (tmp_path / "var").is_dir()
