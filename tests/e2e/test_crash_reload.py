"""kill -9 while rules are being reloaded (SIGHUP, many times a second) under a stream of
traps, repeatedly. After every restart: the database is intact, the rules in force are one
whole version of the rule file (probed with traps whose rule id names the version), every
committed alarm and ticket is there with a count that never went down, one ticket per fault."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

from tests.fixtures import traps
from tests.fixtures.daemon import Daemon, read_db
from tests.fixtures.netsnmp import COLD_START, IF_INDEX, NetSnmp, free_udp_port
from tests.fixtures.traps import link_down
from tests.helpers import ROOT, base_config, wait_until, write_config

KEYS = 20


def _pack(version: int) -> str:
    """One version of the rule file: the link rule is the same in both; the two probe rules
    carry the version in their ids (and levels), so a probe tells which version is live."""
    cold, warm = (2, 4) if version == 1 else (1, 3)
    return f'''[pack]
name = "crash-reload"
version = "{version}"

[[rules]]
id = "link-down"
event = "IF-MIB::linkDown"
level = 3
key = "{{device}}/if/{{ifIndex}}"
title = "Interface {{ifIndex}} down on {{device}}"

[[rules]]
id = "cold-v{version}"
event = "SNMPv2-MIB::coldStart"
level = {cold}
key = "{{device}}/cold/{{ifIndex}}"
title = "probe"

[[rules]]
id = "warm-v{version}"
event = "SNMPv2-MIB::warmStart"
level = {warm}
key = "{{device}}/warm/{{ifIndex}}"
title = "probe"
'''


def _write_pack(path: Path, version: int) -> None:
    """Replace the rule file atomically (write aside, rename), as an operator's deploy should."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(_pack(version), "utf-8")
    os.replace(tmp, path)


def _state(db: Path) -> tuple[str, dict[str, int], dict[str, str]]:
    """(integrity_check, link alarm counts by key, probe rule ids by alarm key); checks one
    alarm per fault and one ticket per alarm on the way."""
    with closing(read_db(db)) as c:
        ok = c.execute("PRAGMA integrity_check").fetchone()[0]
        alarms = c.execute("SELECT id, key, rule, count, ticket_id FROM alarms").fetchall()
        tickets = c.execute("SELECT id, alarm_id FROM tickets").fetchall()
    assert max(Counter(a[1] for a in alarms).values(), default=1) == 1, "a fault has two alarms"
    assert sorted((a[4], a[0]) for a in alarms) == sorted(tickets), "alarms and tickets do not pair up one to one"
    links = {a[1]: a[3] for a in alarms if a[2] == "link-down"}
    probes = {a[1]: a[2] for a in alarms if a[2] != "link-down"}
    return ok, links, probes


def _probe(netsnmp: NetSnmp, port: int, db: Path, n: int) -> str:
    """Send a coldStart and a warmStart for probe ``n``; return the version whose rules took both."""
    for oid in (COLD_START, "1.3.6.1.6.3.1.1.5.2"):  # coldStart, warmStart
        assert netsnmp.trap(port, oid, [f"{IF_INDEX}.{n}", "i", str(n)]).returncode == 0
    keys = (f"sw-1/cold/{n}", f"sw-1/warm/{n}")
    probes = wait_until(lambda: (p := _state(db)[2]) and all(k in p for k in keys) and p, timeout=5)
    cold, warm = probes[keys[0]], probes[keys[1]]
    assert cold[-1] == warm[-1], f"a mix of two rule versions is live: {cold}, {warm}"
    return cold[-1]


def _storm(port: int, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    pkts = [link_down(i) for i in range(1, KEYS + 1)]
    while not stop.is_set():
        traps.send(port, (pkts[rng.randrange(KEYS)] for _ in range(200)), every=50, pause=0.002)


def _reloads(daemon: Daemon, pack: Path, stop: threading.Event, rng: random.Random, version: list[int]) -> None:
    """Flip the rule file between its versions and SIGHUP the daemon, at random intervals."""
    assert daemon.proc is not None
    pid = daemon.proc.pid
    while not stop.is_set():
        version[0] = 3 - version[0]
        _write_pack(pack, version[0])
        try:
            os.kill(pid, signal.SIGHUP)
        except ProcessLookupError:
            return
        time.sleep(rng.uniform(0.005, 0.08))  # why: reloads at random intervals, a load generator's pacing


def test_kill9_during_rule_reloads_repeatedly(tmp_path: Path, netsnmp: NetSnmp) -> None:
    port = free_udp_port()
    pack = tmp_path / "reload-rules.toml"
    _write_pack(pack, 1)
    d = base_config(tmp_path / "var", port)
    d["rules"] = {"packs": [str(pack)]}
    cfg = write_config(tmp_path / "config.toml", d)
    db = tmp_path / "var" / "gateway.db"
    daemon = Daemon(cfg, tmp_path / "gateway.log")
    rng = random.Random(5)
    version = [1]
    before: dict[str, int] = {}
    probes = 0
    try:
        for round_ in range(4):
            daemon.start()
            if db.exists():
                ok, links, _ = _state(db)
                assert ok == "ok"
                assert all(links.get(k, 0) >= n for k, n in before.items()), "a committed count went down"
                before = links
            probes += 1
            assert _probe(netsnmp, port, db, probes) == str(version[0]), "the restarted gateway is not on the file's rules"
            if round_ == 0:  # the operator's way once: validate, signal, read the daemon's answer
                _write_pack(pack, 2)
                version[0] = 2
                r = subprocess.run([sys.executable, "-m", "gateway", "rules", "reload", "-c", str(cfg)],
                                   capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
                assert r.returncode == 0 and "reloaded" in r.stdout, r.stderr
                probes += 1
                assert _probe(netsnmp, port, db, probes) == "2"
            stop = threading.Event()
            workers = [threading.Thread(target=_storm, args=(port, stop, round_)),
                       threading.Thread(target=_reloads, args=(daemon, pack, stop, rng, version))]
            for w in workers:
                w.start()
            time.sleep(rng.uniform(0.3, 1.5))  # why: the kill lands at a random instant amid reloads and traps
            daemon.kill9()
            stop.set()
            for w in workers:
                w.join()
        daemon.start()
        ok, links, _ = _state(db)
        assert ok == "ok" and len(links) == KEYS
        assert all(links[k] >= n for k, n in before.items())
        probes += 1
        assert _probe(netsnmp, port, db, probes) == str(version[0])
        assert daemon.stop() == 0
        log = daemon.log.read_text()
        assert "Traceback" not in log and "reload rejected" not in log
        assert log.count("reloaded:") >= 4  # the reloads did happen between the kills
    finally:
        daemon.cleanup()
