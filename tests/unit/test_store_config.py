"""``[store]``: SQLite stays the default; ``backend = "postgresql"`` needs a ``dsn``; the
password comes from ``password_file`` or the environment, never shown in messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.runtime.stores import PASSWORD_ENV, describe_store, store_password


def _cfg(tmp_path: Path, store: str) -> Path:
    p = tmp_path / "gw.toml"
    p.write_text(f"[store]\n{store}\n[policies.mine-monitoring]\n", "utf-8")
    return p


def test_sqlite_is_the_default(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path, ""))
    assert cfg.store.backend == "sqlite" and describe_store(cfg).endswith("gateway.db")


def test_postgresql_without_a_dsn_names_the_key(tmp_path: Path) -> None:
    path = _cfg(tmp_path, 'backend = "postgresql"')
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == f'{path}: store.dsn: required with backend = "postgresql"'


def test_a_bad_schema_name_names_the_key(tmp_path: Path) -> None:
    path = _cfg(tmp_path, 'backend = "postgresql"\ndsn = "host=x"\nschema = "a; drop"')
    with pytest.raises(ConfigError, match=r"store\.schema"):
        load_config(path)


def test_the_password_comes_from_its_file_then_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    cfg = load_config(_cfg(tmp_path, 'backend = "postgresql"\ndsn = "host=db.example.net dbname=gw user=gw password=s3cret"'))
    assert store_password(cfg) is None
    assert describe_store(cfg) == "postgresql://db.example.net:5432/gw" and "s3cret" not in describe_store(cfg)
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    assert store_password(cfg) == "from-env"
    (tmp_path / "pw").write_text("from-file\nignored\n", "utf-8")
    cfg = load_config(_cfg(tmp_path, 'backend = "postgresql"\ndsn = "host=db"\npassword_file = "pw"'))
    assert store_password(cfg) == "from-file"
    cfg = load_config(_cfg(tmp_path, 'backend = "postgresql"\ndsn = "host=db"\npassword_file = "missing"'))
    with pytest.raises(ConfigError, match=r"store\.password_file: cannot read .*missing"):
        store_password(cfg)


def test_the_readme_config_for_two_gateways_is_valid() -> None:
    """README "Running two or more gateways": its TOML, with the example's policies, loads."""
    import tomllib

    from gateway.config import config_from_dict
    from tests.helpers import ROOT, example_dict

    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme[readme.index("## Running two or more gateways"):]
    block = section[section.index("```toml\n") + 8: section.index("```", section.index("```toml\n") + 8)]
    d = tomllib.loads(block)
    ex = example_dict()
    cfg = config_from_dict({**d, "policies": ex["policies"], "inventory": ex["inventory"]}, "README.md")
    assert (cfg.store.backend, cfg.ha.enabled, cfg.ha.lease, cfg.store.db_schema) == ("postgresql", True, 10.0, "gateway")
    assert cfg.adapters.mqtt[0].clean_session is False and cfg.adapters.mqtt[0].client_id == "gateway-central"
    assert cfg.ha.advertise_url == "http://gw1.example.net:8080"
