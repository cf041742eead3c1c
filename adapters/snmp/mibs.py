"""OID ↔ MIB name resolution: loads compiled MIBs once, then answers from a memo."""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

from adapters.snmp.rfc3584 import v1_trap_oid

__all__ = ["DEFAULT_MODULES", "MibResolver", "pysmi_available", "v1_trap_oid"]

log = logging.getLogger(__name__)

#: The modules a NOC meets on day one (all shipped precompiled by pysnmp or pysnmp-mibs).
DEFAULT_MODULES: tuple[str, ...] = (
    "SNMPv2-SMI",
    "SNMPv2-MIB",
    "IF-MIB",
    "ENTITY-MIB",
    "ENTITY-SENSOR-MIB",
    "UPS-MIB",
    "HOST-RESOURCES-MIB",
    "SNMP-COMMUNITY-MIB",  # snmpTrapAddress.0, which relays add to forwarded traps
)

#: A prefix match shallower than ``internet`` (1.3.6.1) names nothing useful
#: (``iso.2.840...``), so such OIDs stay numeric.
_MIN_PREFIX_ARCS = 4


def pysmi_available() -> bool:
    """Tell whether pysmi (the MIB text compiler) is importable.

    Returns:
        True when text MIBs could be compiled; this module itself only loads
        precompiled pysnmp ``.py`` MIBs.
    """
    try:
        import pysmi  # noqa: F401
    except ImportError:
        return False
    return True


def _parse_oid(oid: str) -> tuple[int, ...] | None:
    """Dotted string → tuple of arcs, or None when it is not a numeric OID."""
    parts = oid.strip().strip(".").split(".")
    try:
        arcs = tuple(int(p) for p in parts)
    except ValueError:
        return None
    if not arcs or any(a < 0 for a in arcs):
        return None
    return arcs


class MibResolver:
    """Turns dotted OIDs into ``MODULE::symbol.index`` names and back.

    MIB modules are loaded once, in the constructor (a few hundred milliseconds: do it
    at start-up, off the event loop). After that, :meth:`split` and :meth:`name` cost
    a dictionary hit for every OID seen before; the first sighting of an OID walks the
    MIB tree once and the answer is memoised. The memos are bounded: when one holds
    ``memo_size`` entries it is cleared and refills with the OIDs still in use.

    Lookups may run on several threads: memo hits take no lock, first sightings
    serialise on one.

    Sources, searched in this order: pysnmp's own framework MIBs, then each directory
    of ``extra_dirs`` (compiled pysnmp ``.py`` MIBs, e.g. vendor MIBs compiled with
    pysmi; every module found there is loaded), then the ``pysnmp_mibs`` package (~275
    IETF/IANA MIBs, of which only ``modules`` are loaded).

    Attributes:
        loaded: names of the modules that loaded.
        failed: module name → error text for modules that did not load (logged, not
            fatal: a broken vendor MIB must not stop the gateway).
        load_seconds: how long the constructor spent loading.
    """

    def __init__(
        self,
        extra_dirs: Sequence[str | os.PathLike[str]] = (),
        modules: Sequence[str] = DEFAULT_MODULES,
        *,
        memo_size: int = 100_000,
    ) -> None:
        """Load the MIB modules.

        Args:
            extra_dirs: directories of compiled pysnmp MIB modules (``*.py``).
            modules: module names to load from all sources (the defaults cover
                SNMPv2, IF, ENTITY, ENTITY-SENSOR, UPS and HOST-RESOURCES MIBs).
            memo_size: upper bound of the OID → name memo.

        Raises:
            ValueError: a directory of ``extra_dirs`` does not exist.
        """
        import time

        import pysnmp_mibs
        from pysnmp.smi import builder, view
        from pysnmp.smi.error import SmiError

        started = time.perf_counter()
        self._memo: dict[str, tuple[str, str, str]] = {}
        self._names: dict[str, str] = {}
        self._memo_size = max(1, memo_size)
        self._reverse: dict[str, str] = {}
        self._lock = threading.Lock()
        self.failed: dict[str, str] = {}

        dirs = [Path(d) for d in extra_dirs]
        for d in dirs:
            if not d.is_dir():
                raise ValueError(f"MIB directory {str(d)!r} does not exist")
        mib_builder = builder.MibBuilder()
        mib_builder.set_mib_sources(
            *mib_builder.get_mib_sources(),
            *(builder.DirMibSource(str(d)) for d in dirs),
            builder.DirMibSource(os.path.dirname(pysnmp_mibs.__file__)),
        )
        wanted = list(dict.fromkeys([*modules, *self._modules_in(dirs)]))
        with warnings.catch_warnings():
            # Older compiled MIBs (pysnmp-mibs included) call camelCase builder methods
            # that pysnmp 7 deprecates; loading happens once, so the noise is dropped.
            warnings.simplefilter("ignore", DeprecationWarning)
            for mod in wanted:
                try:
                    mib_builder.load_modules(mod)
                except SmiError as exc:  # MibNotFoundError, or MibLoadError wrapping any failure
                    self.failed[mod] = str(exc).splitlines()[0][:300]
                    log.warning("MIB module %s not loaded: %s", mod, self.failed[mod])
            self._view = view.MibViewController(mib_builder)
        self._builder = mib_builder
        self.loaded: tuple[str, ...] = tuple(m for m in wanted if m not in self.failed)
        self.load_seconds = time.perf_counter() - started

    @staticmethod
    def _modules_in(dirs: Sequence[Path]) -> list[str]:
        names: list[str] = []
        for d in dirs:
            for p in sorted(d.iterdir()):
                if p.suffix in (".py", ".pyc") and not p.name.startswith("__"):
                    names.append(p.stem)
        return names

    # -- OID -> name -----------------------------------------------------------------

    def split(self, oid: str) -> tuple[str, str, str]:
        """Split an OID into ``(module, symbol, index_suffix)``.

        Args:
            oid: dotted OID, e.g. ``"1.3.6.1.2.1.2.2.1.1.15"``.

        Returns:
            ``("IF-MIB", "ifIndex", "15")`` for a known node (the suffix is ``""``
            for an exact match and dotted otherwise), or ``("", oid, "")`` when no
            loaded MIB covers it. An OID below a known node but not itself defined
            (an enterprise subtree) gets the deepest known node plus the numeric
            rest: ``("SNMPv2-SMI", "enterprises", "9.9.1")``.
        """
        hit = self._memo.get(oid)
        if hit is not None:
            return hit
        return self._resolve(oid)

    def name(self, oid: str) -> str:
        """Return the display name of an OID.

        Args:
            oid: dotted OID.

        Returns:
            ``"IF-MIB::linkDown"``, ``"IF-MIB::ifIndex.15"``,
            ``"SNMPv2-SMI::enterprises.9.9.1"``, or the OID unchanged when unknown.
        """
        text = self._names.get(oid)
        if text is not None:
            return text
        mod, sym, suffix = self.split(oid)
        if not mod:
            text = sym
        else:
            text = f"{mod}::{sym}.{suffix}" if suffix else f"{mod}::{sym}"
        names = self._names
        if len(names) >= self._memo_size:
            names.clear()
        names[oid] = text
        return text

    def _resolve(self, oid: str) -> tuple[str, str, str]:
        from pysnmp.smi.error import SmiError

        result: tuple[str, str, str] = ("", oid, "")
        arcs = _parse_oid(oid)
        if arcs is not None:
            with self._lock:
                try:
                    mod, sym, suffix = self._view.get_node_location(arcs)
                except SmiError:
                    pass
                else:
                    if not suffix or len(arcs) - len(suffix) >= _MIN_PREFIX_ARCS:
                        result = (mod, sym, ".".join(str(a) for a in suffix))
        memo = self._memo
        if len(memo) >= self._memo_size:
            memo.clear()
        memo[oid] = result
        return result

    @property
    def memo_len(self) -> int:
        """Number of OIDs currently memoised."""
        return len(self._memo)

    # -- name -> OID -----------------------------------------------------------------

    def oid(self, name: str) -> str:
        """Resolve a name back to a dotted OID (for rules written with names).

        Args:
            name: ``"IF-MIB::linkDown"``, ``"IF-MIB::ifIndex.15"`` or a dotted OID
                (returned normalised).

        Returns:
            The dotted OID.

        Raises:
            KeyError: the module is not loaded or does not define the symbol, or the
                text is neither a name nor a numeric OID.
        """
        hit = self._reverse.get(name)
        if hit is not None:
            return hit
        arcs = _parse_oid(name)
        if arcs is not None:
            dotted = ".".join(map(str, arcs))
        else:
            mod, sep, rest = name.partition("::")
            if not sep or not mod or not rest:
                raise KeyError(f"{name!r} is neither MODULE::symbol nor a dotted OID")
            sym, _, suffix = rest.partition(".")
            suffix_arcs = _parse_oid(suffix) if suffix else ()
            if suffix_arcs is None:
                raise KeyError(f"{name!r}: index {suffix!r} is not numeric")
            dotted = self._symbol_oid(mod, sym, name)
            if suffix_arcs:
                dotted = dotted + "." + ".".join(map(str, suffix_arcs))
        if len(self._reverse) >= self._memo_size:
            self._reverse.clear()
        self._reverse[name] = dotted
        return dotted

    def _symbol_oid(self, mod: str, sym: str, name: str) -> str:
        from pysnmp.smi.error import SmiError

        if mod not in self.loaded and mod not in self._builder.mibSymbols:
            raise KeyError(f"{name!r}: MIB module {mod} is not loaded")
        with self._lock:
            try:
                arcs, _labels, _suffix = self._view.get_node_name((sym,), mod)
            except SmiError:
                raise KeyError(f"{name!r}: {mod} defines no {sym}") from None
        return ".".join(map(str, arcs))
