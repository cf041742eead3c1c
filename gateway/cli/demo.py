"""``gateway demo``: the daemon on SQLite plus simulated devices over real SNMP and MQTT.

Needs nothing else: it uses the MQTT broker at 127.0.0.1:1883 when one answers, else
starts Mosquitto on a free port when the ``mosquitto`` binary is installed, else an
embedded broker (amqtt).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import socket
import subprocess
import tempfile
import tomllib
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any

from adapters.simulator import Simulator, demo_devices
from gateway.config import Config, config_from_dict

__all__ = ["demo_config", "run_demo"]

log = logging.getLogger("gateway.demo")

#: The documented example config, shipped inside the package (works from a wheel too).
EXAMPLE = resources.files("gateway").joinpath("data", "config.example.toml")


def _free(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextlib.asynccontextmanager
async def ensure_broker() -> AsyncIterator[tuple[str, int, str]]:
    """(host, port, what) of a usable MQTT broker, started here if none answers."""
    if _answers("127.0.0.1", 1883):
        yield "127.0.0.1", 1883, "the broker at 127.0.0.1:1883"
        return
    port = _free(socket.SOCK_STREAM)
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)  # noqa: ASYNC240
    if exe:
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "mosquitto.conf"
            conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n")
            # A child for the demo's whole life, started once before the gateway: no need for asyncio's.
            proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
            try:
                for _ in range(50):
                    if _answers("127.0.0.1", port):
                        break
                    await asyncio.sleep(0.1)
                yield "127.0.0.1", port, f"Mosquitto started on 127.0.0.1:{port}"
            finally:
                proc.terminate()
                proc.wait(5)
        return
    from amqtt.broker import Broker  # an embedded broker: the demo needs nothing installed

    broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
                     "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}})
    await broker.start()
    try:
        yield "127.0.0.1", port, f"embedded broker on 127.0.0.1:{port}"
    finally:
        await broker.shutdown()


def demo_config(data_dir: Path, snmp_port: int, broker: tuple[str, int], api_port: int, token: str) -> Config:
    example = tomllib.loads(EXAMPLE.read_text("utf-8"))
    devices = []
    for d in demo_devices():
        entry: dict[str, Any] = {"id": d.id, "class": d.device_class, "site": d.site, "region": d.region, "policy": d.policy}
        if d.protocol == "snmp":
            entry["addresses"] = [d.address]
        else:
            entry["heartbeat_interval"] = 5
        devices.append(entry)
    data: dict[str, Any] = {
        "gateway": {"instance": "demo", "data_dir": str(data_dir), "log_level": "INFO"},
        "inventory": {"default_policy": "network-equipment"},
        "policies": example["policies"],
        "api": {"enabled": True, "host": "127.0.0.1", "port": api_port,
                "tokens": [{"name": "demo-operator", "token": token, "role": "operator"}]},
        "adapters": {
            "snmp": [{"name": "snmp", "host": "127.0.0.1", "port": snmp_port, "communities": ["public"]}],
            "mqtt": [{
                "name": "mqtt", "url": f"mqtt://{broker[0]}:{broker[1]}",
                # Several demos on one host may share the broker: gateway-demo-<host> each would
                # take the connection from the others.
                "client_id": f"gateway-demo-{secrets.token_hex(4)}",
                "subscriptions": [
                    {"topic": "site/{site}/device/{device}/heartbeat", "kind": "heartbeat", "qos": 0},
                    {"topic": "site/{site}/device/{device}/status", "kind": "status", "qos": 1},
                ],
            }],
        },
        "liveness": {"default_interval": 5, "tolerance": 3},
        "devices": devices,
    }
    return config_from_dict(data, "<demo>", str(data_dir))


async def run_demo(data_dir: Path | None, api_port: int, speed: float, loops: int | None, stop: asyncio.Event) -> int:
    import aiomqtt

    from gateway.app import Gateway

    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    token = secrets.token_urlsafe(12)
    async with ensure_broker() as (host, port, what):
        cfg = demo_config(data_dir, _free(socket.SOCK_DGRAM), (host, port), api_port, token)
        async with Gateway(cfg) as gw, aiomqtt.Client(host, port, identifier=f"demo-sim-{secrets.token_hex(3)}") as client:
            snmp_port = gw.adapters[0].address[1]

            async def publish(topic: str, payload: bytes) -> None:
                await client.publish(topic, payload, qos=1 if topic.endswith("/status") else 0)

            sim = Simulator(("127.0.0.1", snmp_port), publish, speed=speed)
            print(f"Demo running ({what}; data in {data_dir}).", flush=True)
            print(f"Board:  http://127.0.0.1:{api_port}/", flush=True)
            print(f"Operator token (paste it on the board to act): {token}", flush=True)
            print("Stop with Ctrl-C.", flush=True)
            task = asyncio.create_task(sim.run(loops=loops))
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            for t in (task, stopper):
                t.cancel()
            await asyncio.gather(task, stopper, return_exceptions=True)
    return 0
