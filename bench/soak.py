"""Soak: a gateway process under a mixed load for ``--minutes``, sampling its RSS and open file
descriptors. Load: SNMP traps (steady rate, 200 faults, raises and clears; plus a fresh fault every second
that opens a ticket and clears 5 s later, so help-desk deliveries never stop), MQTT heartbeats
from 2,000 devices through a private Mosquitto, API reads of alarms/tickets/board/metrics, an operator closing restored tickets through the API,
and help-desk deliveries to a local webhook receiver (every ticket change is delivered).

    .venv/bin/python bench/soak.py --minutes 30

Prints one line per sample and a summary: both series must be flat after warm-up.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.snmp import ber
from tests.helpers import base_config, to_toml


def free(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Hook(http.server.BaseHTTPRequestHandler):
    received = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        _Hook.received += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *a: object) -> None:
        pass


class _Closed:
    n = 0


def sample(pid: int) -> tuple[float, int]:
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * 4096 / 2**20
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--trap-rate", type=float, default=2000.0)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    snmp_port, mqtt_port, api_port = free(socket.SOCK_DGRAM), free(), free()
    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    (tmp / "mosquitto.conf").write_text(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n")
    broker = subprocess.Popen([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(tmp / "mosquitto.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    token, op = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    d = base_config(tmp / "var", snmp_port)
    d["gateway"]["log_level"] = "WARNING"
    d["api"] = {"enabled": True, "port": api_port, "tokens": [{"name": "soak", "token": token, "role": "viewer"},
                                                                      {"name": "noc", "token": op, "role": "operator"}]}
    d["adapters"]["mqtt"] = [{"url": f"mqtt://127.0.0.1:{mqtt_port}",
                              "subscriptions": [{"topic": "soak/{device}/heartbeat", "kind": "heartbeat"}]}]
    d["liveness"] = {"default_interval": 5, "tolerance": 3}
    d["inventory"] = {**d["inventory"], "unknown_burst": 10_000}  # all 2,000 heartbeating ids from the start
    d["helpdesk"] = [{"type": "webhook", "name": "hook", "url": f"http://127.0.0.1:{hook.server_port}/",
                      "secret": secrets.token_hex(16)}]
    (tmp / "config.toml").write_text(to_toml(d))
    gw = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c", str(tmp / "config.toml")], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(4)
    stop = threading.Event()

    def traps() -> None:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        pkts = []
        for i in range(1, 201):
            for oid in ("1.3.6.1.6.3.1.1.5.3", "1.3.6.1.6.3.1.1.5.4"):
                pkts.append(ber.encode_trap(ber.TrapMessage(ber.V2C, b"public", ber.PDU_TRAP_V2, i, [
                    ("1.3.6.1.2.1.1.3.0", ber.Typed(ber.TAG_TIMETICKS, i)),
                    ("1.3.6.1.6.3.1.1.4.1.0", ber.Typed(ber.TAG_OID, oid)),
                    (f"1.3.6.1.2.1.2.2.1.1.{i}", i)])))
        n, t0 = 0, time.monotonic()
        while not stop.is_set():
            s.sendto(pkts[(n * 7) % len(pkts)], ("127.0.0.1", snmp_port))
            n += 1
            ahead = n / a.trap_rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)

    def faults() -> None:
        """A fresh fault every second, cleared 5 s later: tickets keep opening and resolving,
        so help-desk deliveries go on for the whole run (1,000 keys in rotation: a key comes
        back only after ~17 minutes, long after its ticket was resolved)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        def trap(index: int, oid: str, rid: int) -> bytes:
            return ber.encode_trap(ber.TrapMessage(ber.V2C, b"public", ber.PDU_TRAP_V2, rid, [
                ("1.3.6.1.2.1.1.3.0", ber.Typed(ber.TAG_TIMETICKS, rid)),
                ("1.3.6.1.6.3.1.1.4.1.0", ber.Typed(ber.TAG_OID, oid)),
                (f"1.3.6.1.2.1.2.2.1.1.{index}", index)]))

        k = 0
        while not stop.wait(1.0):
            s.sendto(trap(1000 + k % 1000, "1.3.6.1.6.3.1.1.5.3", 10_000 + k), ("127.0.0.1", snmp_port))
            if k >= 5:
                s.sendto(trap(1000 + (k - 5) % 1000, "1.3.6.1.6.3.1.1.5.4", 20_000 + k), ("127.0.0.1", snmp_port))
            k += 1

    def heartbeats() -> None:
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="soak-pub")
        c.connect("127.0.0.1", mqtt_port)
        c.loop_start()
        while not stop.is_set():
            for i in range(2000):
                c.publish(f"soak/dev-{i:05d}/heartbeat", json.dumps({"battery": 80, "temperature": 35}))
            time.sleep(2.0)
        c.loop_stop()

    def reads() -> None:
        import httpx

        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers={"Authorization": f"Bearer {token}"}) as h:
            while not stop.is_set():
                for path in ("/api/v1/alarms?limit=50", "/api/v1/tickets?limit=50", "/api/v1/board", "/metrics", "/healthz"):
                    try:
                        h.get(path, timeout=10)
                    except httpx.HTTPError:
                        pass
                time.sleep(0.2)

    def closer() -> None:
        """The NOC's part: tickets whose fault has cleared (restored) are closed through the API
        every few seconds, so open tickets (which the gateway keeps in memory) do not pile up."""
        import httpx

        with httpx.Client(base_url=f"http://127.0.0.1:{api_port}", headers={"Authorization": f"Bearer {op}"}) as h:
            while not stop.wait(5.0):
                try:
                    for t in h.get("/api/v1/tickets", params={"status": "restored", "limit": 500}, timeout=10).json():
                        h.post(f"/api/v1/tickets/{t['id']}/close", json={"note": "soak"}, timeout=10)
                        _Closed.n += 1
                except (httpx.HTTPError, ValueError, TypeError):
                    pass

    threads = [threading.Thread(target=f, daemon=True) for f in (traps, faults, heartbeats, reads, closer)]
    for t in threads:
        t.start()
    samples = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < a.minutes * 60:
            time.sleep(a.every)
            rss, fds = sample(gw.pid)
            samples.append((time.monotonic() - t0, rss, fds))
            print(f"{samples[-1][0]:7.0f} s  RSS {rss:7.1f} MiB  fds {fds:4d}  webhook deliveries {_Hook.received}  tickets closed {_Closed.n}", flush=True)
    finally:
        stop.set()
        gw.send_signal(signal.SIGTERM)
        gw.wait(60)
        broker.terminate()
        hook.shutdown()
    warm = [s for s in samples if s[0] >= min(120.0, a.minutes * 60 / 3)]
    if warm:
        r = [s[1] for s in warm]
        f = [s[2] for s in warm]
        print(f"after warm-up ({len(warm)} samples): RSS {min(r):.1f}–{max(r):.1f} MiB, fds {min(f)}–{max(f)}, "
              f"webhook deliveries {_Hook.received}")


if __name__ == "__main__":
    main()
