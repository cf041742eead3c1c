"""Loads rule packs (built-in by name, files, directories) into a RuleEngine; errors name file and key."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from gateway.config import Config, format_loc
from gateway.errors import ConfigError
from gateway.model import FaultLevel
from rules import PackModel, RuleEngine, parse_pack

__all__ = ["builtin_packs", "load_pack_file", "load_rules"]


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
