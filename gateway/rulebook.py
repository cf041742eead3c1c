"""Loads rule packs (built-in by name, files, directories) into a RuleEngine; errors name file and key."""

from __future__ import annotations

import json
import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config import Config, PolicySection, RulesSection, format_loc
from gateway.errors import ConfigError
from gateway.model import FaultLevel
from rules import PackModel, RuleEngine, parse_pack

__all__ = [
    "CENTRAL_RULES",
    "builtin_packs",
    "central_rules_version",
    "load_pack_file",
    "load_rules",
    "restore_central_rules",
    "rule_set",
    "store_central_rules",
    "with_central_rules",
]

#: The folder (in the data dir) where an edge keeps the central's rule set it runs.
CENTRAL_RULES = "central-rules"
_MANIFEST = "current.json"
#: Always loaded from the gateway's own software, never distributed.
_OWN = ("gateway", "service")


def builtin_packs() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("rules").joinpath("packs").iterdir() if p.name.endswith(".toml"))


def _parse(text: str, file: str) -> PackModel:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(file, "", f"TOML syntax error: {e}") from None
    try:
        return parse_pack(data)
    except ValidationError as e:
        errs = []
        for err in e.errors():
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
            errs.append(ConfigError(file, format_loc(tuple(err["loc"])), msg))
        errs[0].errors = errs  # type: ignore[attr-defined]
        raise errs[0] from None


def load_pack_file(path: str | Path) -> PackModel:
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), "", f"cannot read rule pack: {e}") from None
    return _parse(text, str(path))


def load_rules(cfg: Config) -> RuleEngine:
    """Build the engine from the config's ``[rules]`` section (raises ConfigError)."""
    packs: list[PackModel] = []
    builtin = builtin_packs()
    names = list(cfg.rules.packs)
    if "gateway" not in names:
        names.append("gateway")  # the gateway's own faults are always classified
    if "service" not in names:
        names.append("service")  # so are its after-sales notices (gateway/runtime/service.py)
    for i, name in enumerate(names):
        if name in builtin:
            res = resources.files("rules").joinpath("packs", f"{name}.toml")
            packs.append(_parse(res.read_text("utf-8"), f"rules/packs/{name}.toml"))
        else:
            path = cfg.resolve_path(name)
            if not path.is_file():
                raise ConfigError(cfg.source, f"rules.packs[{i}]", f"no built-in pack or file named {name!r} (built-in: {', '.join(builtin)})")
            packs.append(load_pack_file(path))
    for i, d in enumerate(cfg.rules.dirs):
        path = cfg.resolve_path(d)
        if not path.is_dir():
            raise ConfigError(cfg.source, f"rules.dirs[{i}]", f"not a directory: {d}")
        for f in sorted(path.glob("*.toml")):
            packs.append(load_pack_file(f))
    default = FaultLevel(cfg.rules.default_level) if cfg.rules.default_level else None
    return RuleEngine(packs, default_level=default)


# -- rule sets distributed from a central to its edges (gateway.forward.control) ----------------
def rule_set(cfg: Config) -> dict[str, Any]:
    """The central's rule packs (texts, built-ins included, in load order), policies and
    default level, as it sends them to its edges. Raises ConfigError (an unreadable pack)."""
    packs: list[list[str]] = []
    builtin = builtin_packs()
    for i, name in enumerate(cfg.rules.packs):
        if name in _OWN:
            continue
        if name in builtin:
            packs.append([name, resources.files("rules").joinpath("packs", f"{name}.toml").read_text("utf-8")])
            continue
        path = cfg.resolve_path(name)
        try:
            packs.append([path.stem, path.read_text("utf-8")])
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(cfg.source, f"rules.packs[{i}]", f"cannot read rule pack: {e}") from None
    for d in cfg.rules.dirs:
        for f in sorted(cfg.resolve_path(d).glob("*.toml")):
            packs.append([f.stem, f.read_text("utf-8")])
    return {
        "packs": packs,
        "policies": {n: p.model_dump(mode="json") for n, p in cfg.policies.items()},
        "default_level": cfg.rules.default_level,
    }


def store_central_rules(data_dir: Path, body: dict[str, Any]) -> str | None:
    """Write a rule set from the central (its packs as files, then the manifest naming
    them and its version). Returns the previous manifest's text (None: there was none),
    for :func:`restore_central_rules` if the set is refused."""
    version = int(body["version"])
    folder = data_dir / CENTRAL_RULES
    vdir = folder / f"v{version}"
    vdir.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (name, text) in enumerate(body.get("packs", [])):
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name))[:60] or "pack"
        fname = f"{i:02d}-{safe}.toml"
        (vdir / fname).write_text(str(text), "utf-8")
        files.append(f"v{version}/{fname}")
    manifest = folder / _MANIFEST
    old = manifest.read_text("utf-8") if manifest.is_file() else None
    tmp = folder / (_MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"version": version, "digest": body.get("digest", ""), "packs": files,
                               "policies": body.get("policies", {}),
                               "default_level": body.get("default_level")}), "utf-8")
    os.replace(tmp, manifest)
    return old


def restore_central_rules(data_dir: Path, old: str | None) -> None:
    manifest = data_dir / CENTRAL_RULES / _MANIFEST
    if old is None:
        manifest.unlink(missing_ok=True)
    else:
        manifest.write_text(old, "utf-8")


def _manifest(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / CENTRAL_RULES / _MANIFEST
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text("utf-8"))
        return m if isinstance(m, dict) else None
    except (OSError, ValueError):
        return None


def central_rules_version(data_dir: Path) -> int:
    """The version of the central's rule set stored here (0: none)."""
    m = _manifest(data_dir)
    return int(m.get("version", 0)) if m else 0


def with_central_rules(cfg: Config) -> Config:
    """An edge's config with the central's rule set it stored (if any) in place of its own
    ``[rules]``, and the central's policies over its own (same name: the central's wins).
    Raises ConfigError (a policy the edge cannot take)."""
    if cfg.forward.mode != "edge":
        return cfg
    data_dir = cfg.data_path()
    m = _manifest(data_dir)
    if m is None:
        return cfg
    folder = data_dir / CENTRAL_RULES
    source = str(folder / _MANIFEST)
    policies = dict(cfg.policies)
    for name, p in (m.get("policies") or {}).items():
        try:
            policies[name] = PolicySection.model_validate(p)
        except ValidationError as e:
            err = e.errors()[0]
            raise ConfigError(source, f"policies.{name}.{format_loc(tuple(err['loc']))}",
                              err["msg"].removeprefix("Value error, ")) from None
    rules = RulesSection(packs=[str(folder / f) for f in m.get("packs", [])], dirs=[],
                         default_level=m.get("default_level"))
    return cfg.model_copy(update={"rules": rules, "policies": policies})
