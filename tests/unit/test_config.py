"""Config validation: the example validates and documents every option; errors name file and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from gateway.config import Config, load_config, parse_duration
from gateway.errors import ConfigError
from tests.helpers import EXAMPLE, ROOT


def test_example_config_validates() -> None:
    cfg = load_config(EXAMPLE)
    assert set(cfg.policies) == {"mine-monitoring", "medical-devices", "network-equipment", "software-7x24", "beidou-integrator"}
    assert cfg.adapters.snmp[0].communities == ["public"]
    assert cfg.adapters.snmp[0].port == 1162


def _fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    out = set()
    for name, f in model.model_fields.items():
        if name in ("source", "base_dir"):
            continue
        key = f.alias or name
        out.add(key)
        ann = f.annotation
        for sub in getattr(ann, "__args__", ()) + (ann,):
            inner = getattr(sub, "__args__", ())
            for cand in (sub, *inner):
                if isinstance(cand, type) and issubclass(cand, BaseModel):
                    out |= _fields(cand)
    return out


def test_example_documents_every_option() -> None:
    """Every config key of every model appears in the example (set or commented)."""
    text = EXAMPLE.read_text("utf-8")
    missing = sorted(k for k in _fields(Config) if not any(p in text for p in (f"{k} =", f"{k}]", f".{k}.", f"[{k}.", f"[[{k}.")))
    assert not missing, f"config.example.toml does not mention: {missing}"


def test_every_option_is_commented_where_it_first_appears() -> None:
    """The first line setting each option has a comment on it or just above it."""
    lines = EXAMPLE.read_text("utf-8").splitlines()
    undocumented = []
    for k in sorted(_fields(Config)):
        for i, line in enumerate(lines):
            bare = line.lstrip("# ").strip()
            if bare.startswith((f"{k} =", f"[{k}", f"[[{k}")) or f".{k}]" in bare or f".{k}." in bare:
                above = lines[max(0, i - 3): i]
                if not ("#" in line.split("=", 1)[-1] or any(a.lstrip().startswith("#") for a in above)):
                    undocumented.append(k)
                break
    assert not undocumented, f"options without a comment where they first appear: {undocumented}"


@pytest.mark.parametrize(
    "text, key, fragment",
    [
        ("[gateway]\nnope = 1\n", "gateway.nope", "unknown key"),
        ("[[adapters.snmp]]\nport = 'x'\n", "adapters.snmp[0].port", "integer"),
        ("[[adapters.snmp]]\nport = 70000\n", "adapters.snmp[0].port", "65535"),
        ("[[devices]]\nid = 'a'\npolicy = 'nosuch'\n", "devices[0].policy", "no policy named 'nosuch'"),
        ("[inventory]\ndefault_policy = 'gone'\n", "inventory.default_policy", "no policy named 'gone'"),
        ("[policies.p.levels.1]\nresponse = 'soon'\n", "policies.p.levels.1.response", "not a duration"),
        ("[policies.p.levels.5]\nresponse = '1h'\n", "policies.p.levels.5", ""),
        ("[[devices]]\nid = 'a'\nparent = 'b'\n", "devices[0].parent", "no device"),
        ("[[adapters.snmp]]\nallowed_sources = ['10.0.0.0/33']\n", "adapters.snmp[0].allowed_sources", "network"),
        ("[gateway]\ntimezone = 'Mars/Olympus'\n", "gateway.timezone", "unknown time zone 'Mars/Olympus'"),
        ("[[adapters.mqtt]]\nurl = 'http://b'\nsubscriptions = [{topic = 'a/{device}'}]\n", "adapters.mqtt[0].url",
         "mqtt://"),
        ("[[adapters.mqtt]]\nsubscriptions = [{topic = 'a/{device}', qos = 2}]\n", "adapters.mqtt[0].subscriptions[0].qos",
         ""),
        ("[[adapters.snmp]]\nname = 'a'\n[[adapters.mqtt]]\nname = 'a'\nsubscriptions = [{topic = 'a/{device}'}]\n",
         "adapters.mqtt[0].name", "duplicate adapter name 'a'"),
        ("[[helpdesk]]\ntype = 'webhook'\nurl = 'ftp://x'\nsecret = '0123456789abcdef'\n", "helpdesk[0].url", "http"),
        ("[[helpdesk]]\ntype = 'pagerduty'\nrouting_key = 'k'\nbogus = 1\n", "helpdesk[0].bogus", "unknown key"),
        ("[[helpdesk]]\ntype = 'nosuch'\n", "helpdesk[0]", "webhook"),
        ("[timeseries]\nflush_interval = 'soon'\n", "timeseries.flush_interval", "not a duration"),
    ],
    ids=["unknown-key", "wrong-type", "port-range", "missing-policy", "default-policy", "bad-duration",
         "bad-level", "missing-parent", "bad-cidr", "unknown-timezone", "mqtt-url", "mqtt-qos", "duplicate-adapter-name", "webhook-url",
         "helpdesk-unknown-key", "helpdesk-unknown-type", "timeseries-duration"],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    f = tmp_path / "config.toml"
    base = "" if "default_policy" in text else "[inventory]\ndefault_policy = 'p'\n[policies.p]\n"
    f.write_text(base + text)
    with pytest.raises(ConfigError) as ei:
        load_config(f)
    errs = getattr(ei.value, "errors", [ei.value])
    msgs = [str(e) for e in errs]
    assert any(m.startswith(f"{f}: {key}") and fragment in m for m in msgs), msgs


def test_parent_cycle_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        "[inventory]\ndefault_policy='p'\n[policies.p]\n"
        "[[devices]]\nid='a'\nparent='b'\n[[devices]]\nid='b'\nparent='a'\n"
    )
    with pytest.raises(ConfigError, match=r"devices\[0\]\.parent: parent chain of 'a' loops"):
        load_config(f)


def test_toml_syntax_error_names_file(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[gateway\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: TOML syntax error"):
        load_config(f)


@pytest.mark.parametrize("text, seconds", [("1h", 3600), ("90m", 5400), ("1h30m", 5400), ("2d", 172800), ("45s", 45), (30, 30)])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "1x", "1h 2", "-1", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_check_config_ok() -> None:
    r = _cli("check-config", "-c", str(EXAMPLE))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OK: ")
    assert "5 policies" in r.stdout


def test_check_config_bad_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    f = tmp_path / "config.toml"
    f.write_text("[gateway]\nlog_level = 'LOUD'\n[[adapters.snmp]]\nport = 'x'\nbogus = 1\n")
    r = _cli("check-config", "-c", str(f))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert f"{f}: gateway.log_level" in r.stderr
    assert f"{f}: adapters.snmp[0].port" in r.stderr
    assert f"{f}: adapters.snmp[0].bogus: unknown key" in r.stderr


def test_check_config_missing_file(tmp_path: Path) -> None:
    r = _cli("check-config", "-c", str(tmp_path / "nope.toml"))
    assert r.returncode != 0 and "nope.toml: cannot read" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "text, key, fragment",
    [
        ("[policies.q]\nhuman_only = ['reply']\n", "policies.q.human_only[0]", "response"),
        ("[policies.q.classes.'beidou.x*'.1]\nresponse = { target = '1h', calendar = 'mars' }\n",
         "policies.q.classes.beidou.x*.1.response.calendar", "unknown calendar 'mars'"),
        ("[policies.q.levels.1]\ndispatch = 'soon'\n", "policies.q.levels.1.dispatch", "not a duration"),
        ("[policies.q.penalties]\ncontract_value = 1\nresponse_missed_after = 'later'\n",
         "policies.q.penalties.response_missed_after", "not a duration"),
    ],
    ids=["human-only-kind", "class-variant-calendar", "dispatch-duration", "penalty-threshold"],
)
def test_contract_keys_name_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    f = tmp_path / "config.toml"
    f.write_text("[inventory]\ndefault_policy = 'q'\n" + text)
    with pytest.raises(ConfigError) as ei:
        load_config(f)
    msgs = [str(e) for e in getattr(ei.value, "errors", [ei.value])]
    assert any(m.startswith(f"{f}: {key}") and fragment in m for m in msgs), msgs


def test_contract_keys_reach_the_policy(tmp_path: Path) -> None:
    from gateway.config import build_policies

    f = tmp_path / "config.toml"
    f.write_text(
        "[inventory]\ndefault_policy = 'q'\n[policies.q]\nhuman_only = ['response']\n"
        "[policies.q.levels.2]\nresponse = '30m'\ndispatch = '1h'\n"
        "[policies.q.classes.'front*'.2]\nresponse = '1h'\n[policies.q.regions.beijing.2]\ndispatch = '20m'\n"
        "[policies.q.penalties]\ncontract_value = 10\nresponse_missed_after = '4h'\nrestore_late_after = '6h'\n"
    )
    p = build_policies(load_config(f))["q"]
    assert p.human_only == frozenset({"response"})
    assert p.penalties is not None and (p.penalties.response_missed_after, p.penalties.restore_late_after) == (14400.0, 21600.0)
    # Class variants lie over the level, region variants over both.
    got = {k: t.seconds for k, t in p.targets(2, "Beijing", "front-panel").items()}
    assert got == {"response": 3600.0, "dispatch": 1200.0}
    assert {k: t.seconds for k, t in p.targets(2, "", "back-panel").items()} == {"response": 1800.0, "dispatch": 3600.0}
