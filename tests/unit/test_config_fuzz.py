"""Config files, fuzzed: the example with keys deleted, values of other types, random TOML,
random bytes and other encodings. Loading either gives a usable config or raises
ConfigError naming the file; ``gateway check-config`` exits 2 without a traceback."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import io
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.cli.main import main
from gateway.config import Config, build_devices, build_policies, config_from_dict, load_config
from gateway.errors import ConfigError
from tests.helpers import EXAMPLE, example_dict

FILE = "fuzzed.toml"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Values of every type TOML has, nested a little, with the awkward ones well represented.
scalars = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "1h", "-5s", "nan", "inf", "1e400", "24x7", "*", "\x00", "../..", "public"]),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)),
    st.dates(),
    st.times(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def paths(d: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in nested dicts and lists (``("adapters", "snmp", 0, "port")``)."""
    out = []
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else ()
    for k, v in items:
        out.append((*prefix, k))
        out.extend(paths(v, (*prefix, k)))
    return out


EXAMPLE_PATHS = paths(example_dict())


def _parent(d: Any, path: tuple[Any, ...]) -> Any:
    for k in path[:-1]:
        d = d[k]
    return d


@st.composite
def mutated_examples(draw: st.DrawFn) -> dict[str, Any]:
    """The example with up to four edits: delete a key, replace a value, add an unknown key."""
    d = example_dict()
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(EXAMPLE_PATHS))
        try:
            parent = _parent(d, path)
            parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or replaced it
        op = draw(st.sampled_from(["delete", "replace", "add"]))
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = draw(values)
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(values)
    return d


def assert_loads_or_names_file(load: Any, file: str) -> None:
    """Loading returns a config the daemon can build from, or raises ConfigError for ``file``."""
    try:
        cfg = load()
    except ConfigError as e:
        for err in getattr(e, "errors", [e]):
            assert isinstance(err, ConfigError) and err.file == file, err
            assert str(err).startswith(f"{file}: ") and err.problem, str(err)
        return
    assert isinstance(cfg, Config)
    assert not unrepresentable(cfg.model_dump()), "nan, inf or a number beyond 64 bits accepted"
    build_policies(cfg)
    build_devices(cfg)


def unrepresentable(v: Any) -> list[Any]:
    if (isinstance(v, float) and not math.isfinite(v)) or (isinstance(v, int) and not -(2**63) <= v < 2**63):
        return [v]
    items = v.values() if isinstance(v, dict) else v if isinstance(v, (list, tuple)) else ()
    return [x for item in items for x in unrepresentable(item)]


@FUZZ
@given(data=mutated_examples())
def test_mutated_example(data: dict[str, Any]) -> None:
    assert_loads_or_names_file(lambda: config_from_dict(copy.deepcopy(data), FILE, "."), FILE)


@FUZZ
@given(data=st.dictionaries(st.sampled_from([*example_dict(), "x"]), values, max_size=4))
def test_random_sections(data: dict[str, Any]) -> None:
    assert_loads_or_names_file(lambda: config_from_dict(data, FILE, "."), FILE)


EXAMPLE_LINES = EXAMPLE.read_text("utf-8").splitlines()


@st.composite
def mangled_texts(draw: st.DrawFn) -> bytes:
    """The example's text with lines dropped, inserted or cut short, in some encoding."""
    lines = list(EXAMPLE_LINES)
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "insert", "cut"]))
        if op == "drop":
            del lines[i]
        elif op == "insert":
            lines.insert(i, draw(st.text(max_size=30)))
        else:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    text = "\n".join(lines) + draw(st.sampled_from(["", "\n", "ü", "\x00"]))
    return text.encode(draw(st.sampled_from(["utf-8", "utf-16", "latin-1"])), errors="replace")


#: ``x = [[[…]]]`` or ``x = {a={a=…1}}``, up to deeper than Python's recursion limit.
deep = st.builds(
    lambda n, ends: f"x = {ends[0] * n}{ends[1]}{ends[2] * n}\n".encode(),
    st.integers(1, 3000),
    st.sampled_from([("[", "", "]"), ("{a=", "1", "}")]),
)


@FUZZ
@given(raw=mangled_texts() | st.binary(max_size=200) | st.text(max_size=200).map(str.encode) | deep)
def test_mangled_files(tmp_path: Path, raw: bytes) -> None:
    f = tmp_path / FILE
    f.write_bytes(raw)
    assert_loads_or_names_file(lambda: load_config(f), str(f))


# A policy of the default name, so that checks after the first can be reached.
POLICY = b"[policies.mine-monitoring]\n"
BAD_FILES = {
    "not-utf8": b"[gateway]\ninstance = \"\xff\xfe\"\n",
    "utf16": '[gateway]\ninstance = "gw"\n'.encode("utf-16"),
    "toml-syntax": b"[gateway\n",
    "wrong-types": b"[gateway]\nlog_level = 3\n[[adapters.snmp]]\nport = 'x'\n",
    "nan-duration": b"[liveness]\ndefault_interval = nan\n" + POLICY,
    "inf-rate": b"[[adapters.snmp]]\n[adapters.snmp.storm]\nrate = inf\n" + POLICY,
    "huge-duration": b"[outbox]\nretry_max = '" + b"9" * 400 + b"s'\n" + POLICY,
    "huge-int": b"[pipeline]\nqueue_size = 99999999999999999999999\n" + POLICY,
    "deep-nesting": b"x = " + b"[" * 2000 + b"]" * 2000 + b"\n",
    "pack-is-a-directory": b"[rules]\npacks = ['.']\n" + POLICY,
    "nul-in-pack-name": b"[rules]\npacks = [\"a\\u0000b\"]\n" + POLICY,
}


@pytest.mark.parametrize("raw", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_check_config_exits_2_without_traceback(tmp_path: Path, raw: bytes) -> None:
    f = tmp_path / FILE
    f.write_bytes(raw)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check-config", "-c", str(f)])
    assert code == 2, (out.getvalue(), err.getvalue())
    assert "Traceback" not in err.getvalue()
    assert err.getvalue().startswith(f"error: {f}: "), err.getvalue()
