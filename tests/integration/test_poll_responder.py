"""The benchmark's simulated agents answer like an agent: checked with net-snmp's ``snmpget``
(v2c and v1), and with the poller's own codec (what the benchmark counts)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from adapters.poll.getpdu import decode_answer, encode_get
from bench.poll_responder import Responder
from tests.fixtures.netsnmp import free_udp_port


@pytest.fixture
def responder() -> Iterator[Responder]:
    r = Responder(free_udp_port(), ports=1, communities=3)
    t = threading.Thread(target=r.serve, daemon=True)
    t.start()
    yield r
    r.stop()
    t.join(5)
    r.close()


def _snmpget(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("snmpget")
    if exe is None:
        pytest.skip("net-snmp's snmpget is not installed (Debian package snmp)")
    return subprocess.run([exe, "-On", "-t", "1", "-r", "0", *args[:-1], f"127.0.0.1:{port}", args[-1]],
                          capture_output=True, text=True, timeout=30)


def test_snmpget_reads_each_agents_own_uptime(responder: Responder) -> None:
    port = responder.socks[0].getsockname()[1]
    boots = responder.boots[responder.socks[0].fileno()]
    for version in ("2c", "1"):
        for community in ("c0", "c2"):
            before = time.time()
            r = _snmpget(port, "-v", version, "-c", community, "1.3.6.1.2.1.1.3.0")
            after = time.time()
            assert r.returncode == 0, r.stderr
            m = re.search(r"^\.1\.3\.6\.1\.2\.1\.1\.3\.0 = Timeticks: \((\d+)\)", r.stdout)
            assert m, r.stdout
            ticks = int(m.group(1))
            boot = boots[community.encode()]
            assert (before - boot) * 100 - 1 <= ticks <= (after - boot) * 100 + 1


def test_snmpget_sees_no_such_object_and_unknown_communities_get_no_answer(responder: Responder) -> None:
    port = responder.socks[0].getsockname()[1]
    r = _snmpget(port, "-v", "2c", "-c", "c1", "1.3.6.1.2.1.1.5.0")
    assert "No Such Object" in r.stdout, r.stdout + r.stderr
    r = _snmpget(port, "-v", "1", "-c", "c1", "1.3.6.1.2.1.1.5.0")
    assert "noSuchName" in r.stderr or "no such" in r.stderr.lower(), r.stdout + r.stderr
    r = _snmpget(port, "-v", "2c", "-c", "nope", "1.3.6.1.2.1.1.3.0")
    assert r.returncode != 0 and "Timeout" in r.stderr


def test_the_pollers_codec_reads_the_same_answer(responder: Responder) -> None:
    port = responder.socks[0].getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(encode_get(b"c1", 77), ("127.0.0.1", port))
        ans = decode_answer(s.recv(2048))
    assert ans.request_id == 77 and ans.community == b"c1" and ans.uptime is not None and ans.uptime > 360_000
