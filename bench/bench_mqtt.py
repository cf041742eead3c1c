"""MQTT heartbeat ingest: mosquitto_sub vs bare aiomqtt (json + count) vs the gateway's full
pipeline (MQTT adapter → JSON at the edge → liveness watchdog → rules → alarm book → SQLite)
with each receive path (``client = wire``, the default, and ``client = aiomqtt``), same stream,
same run, against a private Mosquitto (``max_queued_messages 0``).

The publisher (another process) encodes all ``--count`` ~128-byte JSON heartbeats from
``--devices`` device ids up front and writes them with ``sendall`` (QoS 1: PUBACKs drained by a
thread), so it is never what limits a receiver; the broker queues what a receiver has not
taken yet. Each receiver's rate is what it received divided by the time from its first to its
last message. Receivers take turns ``--rounds`` times; medians are reported. Receiver pinned to
core 1, publisher to core 0 when ``taskset`` is there.

    .venv/bin/python bench/bench_mqtt.py --count 100000 --qos 0 --rounds 3
    .venv/bin/python bench/bench_mqtt.py --count 50000 --qos 1 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PUBLISHER = r"""
import json, socket, sys, threading
sys.path.insert(0, sys.argv[6])
from adapters.mqtt.wire import StreamParser, encode_connect, encode_publish
port, count, devices, qos, prefix = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
payloads = [json.dumps({"ch4": 0.31, "co": 4.2, "battery": 87.5, "temperature": 36.4, "seq": i, "fw": "2.4.1"}).encode()
            for i in range(16)]
# The whole stream is encoded before connecting, then written with sendall: the publisher
# costs next to nothing per message, so the receivers, not the load generator, set the pace.
frames = b"".join(encode_publish(f"{prefix}/site-{i % devices % 50}/device/dev-{i % devices:06d}/heartbeat",
                                 payloads[i % 16], qos, i % 65535 + 1 if qos else 0) for i in range(count))
s = socket.create_connection(("127.0.0.1", port))
s.sendall(encode_connect("bench-pub", keepalive=600))
parser = StreamParser()
while not parser.control:
    parser.feed(s.recv(65536))
acked = 0
def drain():
    global acked
    while acked < count:
        data = s.recv(1 << 20)
        if not data:
            return
        parser.control.clear()
        parser.feed(data)
        acked += len(parser.control)
        parser.control.clear()
if qos:
    t = threading.Thread(target=drain, daemon=True)
    t.start()
view = memoryview(frames)
for off in range(0, len(frames), 1 << 20):
    s.sendall(view[off:off + (1 << 20)])
if qos:
    t.join(600)
s.sendall(b"\xe0\x00")
s.close()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def taskset(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def publish(port: int, count: int, devices: int, qos: int, prefix: str) -> None:
    subprocess.run([*taskset(0), sys.executable, "-c", PUBLISHER, str(port), str(count), str(devices), str(qos), prefix,
                    str(ROOT)], check=True, timeout=600)


def run_mosquitto_sub(port: int, count: int, devices: int, qos: int) -> tuple[int, float]:
    prefix = "ms"
    out = tempfile.NamedTemporaryFile(delete=False)  # noqa: SIM115 - mosquitto_sub writes it; read after it exits
    sub = subprocess.Popen([*taskset(1), "mosquitto_sub", "-p", str(port), "-q", str(qos), "-t", f"{prefix}/#",
                            "-F", "%U"], stdout=out, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    publish(port, count, devices, qos, prefix)
    time.sleep(1.0)
    sub.terminate()
    sub.wait(10)
    out.close()
    stamps = [float(x) for x in Path(out.name).read_text().split()]
    os.unlink(out.name)
    return len(stamps), (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0


def _receiver_main(kind: str, port: int, count: int, qos: int, result: str) -> None:
    """Runs in the pinned child: bare aiomqtt or the whole gateway."""
    import uvloop

    async def bare() -> tuple[int, float]:
        import aiomqtt

        n, first, last = 0, 0.0, 0.0
        async with aiomqtt.Client("127.0.0.1", port, identifier="bench-bare", max_queued_incoming_messages=0) as c:
            await c.subscribe("ba/#", qos=qos)
            Path(result + ".ready").touch()
            async def idle() -> None:
                while True:
                    await asyncio.sleep(2.0)
                    if n and time.monotonic() - last > 2.0:
                        raise TimeoutError
            watcher = asyncio.create_task(idle())
            try:
                async for m in c.messages:
                    json.loads(m.payload)
                    n += 1
                    last = time.monotonic()
                    if n == 1:
                        first = last
                    if n >= count:
                        break
            finally:
                watcher.cancel()
        return n, last - first

    async def gateway() -> tuple[int, float]:
        from gateway.app import Gateway
        from gateway.config import config_from_dict
        from tests.helpers import base_config

        tmp = tempfile.mkdtemp()
        d = base_config(Path(tmp) / "var", None)
        d["devices"] = []
        client = "aiomqtt" if kind == "gateway-aiomqtt" else "wire"
        d["adapters"] = {"mqtt": [{"url": f"mqtt://127.0.0.1:{port}", "client_id": "bench-gw", "queue_limit": 100000,
                                   "client": client,
                                   "subscriptions": [{"topic": "gw/{site}/device/{device}/heartbeat", "qos": qos,
                                                      "kind": "heartbeat"}]}]}
        d["liveness"] = {"default_interval": 60, "tolerance": 3}
        # Its invented ids stand for a fleet in the inventory: admit them all, at any rate.
        d["inventory"] = {**d["inventory"], "unknown_max": 1_000_000, "unknown_burst": 1_000_000}
        async with Gateway(config_from_dict(d, "bench.toml", tmp)) as gw:
            Path(result + ".ready").touch()
            st = gw.pipeline.stats
            first = last = 0.0
            seen = at_first = 0
            while True:
                await asyncio.sleep(0.05)
                c = st.committed_events
                if c != seen:
                    if seen == 0:
                        first, at_first = time.monotonic(), c
                    seen, last = c, time.monotonic()
                elif seen and time.monotonic() - last > 2.0:
                    break
                if seen >= count:
                    break
            # Counted every 50 ms: the rate is what was committed between the first and the
            # last observation (not what had been before the first), returned as the time
            # all ``seen`` would take at that rate.
            return seen, (last - first) * seen / (seen - at_first) if seen > at_first else 0.0

    n, dt = uvloop.run(bare() if kind == "bare" else gateway())
    Path(result).write_text(json.dumps([n, dt]))


def run_child(kind: str, port: int, count: int, devices: int, qos: int) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as tmp:
        result = str(Path(tmp) / "result.json")
        child = subprocess.Popen([*taskset(1), sys.executable, __file__, "--child", kind, "--port", str(port),
                                  "--count", str(count), "--qos", str(qos), "--result", result], cwd=ROOT)
        deadline = time.monotonic() + 30
        while not Path(result + ".ready").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.3)
        publish(port, count, devices, qos, "ba" if kind == "bare" else "gw")
        child.wait(600)
        n, dt = json.loads(Path(result).read_text())
        return n, dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--devices", type=int, default=10_000)
    ap.add_argument("--qos", type=int, choices=[0, 1], default=0)
    ap.add_argument("--rounds", type=int, default=3, help="receivers take turns this many times; medians reported")
    ap.add_argument("--child")
    ap.add_argument("--port", type=int)
    ap.add_argument("--result")
    a = ap.parse_args()
    if a.child:
        _receiver_main(a.child, a.port, a.count, a.qos, a.result)
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_queued_messages 0\nmax_inflight_messages 0\n")
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        broker = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        try:
            receivers = (
                ("mosquitto_sub", lambda: run_mosquitto_sub(port, a.count, a.devices, a.qos)),
                ("aiomqtt + json.loads (bare)", lambda: run_child("bare", port, a.count, a.devices, a.qos)),
                ("gateway, client=wire", lambda: run_child("gateway", port, a.count, a.devices, a.qos)),
                ("gateway, client=aiomqtt", lambda: run_child("gateway-aiomqtt", port, a.count, a.devices, a.qos)),
            )
            rates: dict[str, list[float]] = {name: [] for name, _ in receivers}
            for rnd in range(1, a.rounds + 1):
                for name, fn in receivers:
                    n, dt = fn()
                    rate = n / dt if dt else 0.0
                    if n < a.count:
                        print(f"  warning: {name} received {n} of {a.count}", flush=True)
                    rates[name].append(rate)
                    print(f"  round {rnd}  QoS {a.qos}  {name:<30} {n:>7} msgs  {rate:>9,.0f} msgs/s", flush=True)
            med = {name: statistics.median(r) for name, r in rates.items()}
            ref = med["mosquitto_sub"]
            print(f"median of {a.rounds} rounds, QoS {a.qos}:")
            for name, rate in med.items():
                print(f"  {name:<30} {rate:>9,.0f} msgs/s   ratio to mosquitto_sub {rate / ref:.2f}", flush=True)
        finally:
            broker.terminate()
            broker.wait(10)


if __name__ == "__main__":
    main()
