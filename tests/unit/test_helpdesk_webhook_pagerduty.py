"""Tests of the webhook and PagerDuty connectors against loopback receivers, and of the HTTP error table.

Both receivers are small ``http.server`` servers on 127.0.0.1 in a thread: the connectors
speak real HTTP to them, and the receivers check what arrives (signature, schema).
"""

from __future__ import annotations

import hmac
import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from gateway.delivery.helpdesk import CONNECTORS, HelpDesk, OutboxMessage, classify_http_error
from gateway.delivery.helpdesk.pagerduty import PagerDuty, PagerDutyConfig
from gateway.delivery.helpdesk.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_SCHEMA,
    Webhook,
    WebhookConfig,
    sign,
    verify_signature,
)
from gateway.errors import DeliveryError

SECRET = "s3cret-shared-with-the-receiver"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters, like a real integration key
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def snapshot(**over: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "title": "Gas sensor GS-12 silent",
        "device": "gs-12",
        "site": "Datong mine",
        "region": "shanxi",
        "level": 2,
        "alarm_key": "heartbeat.lost:gs-12",
        "first_event": "heartbeat.lost",
        "count": 1,
        "opened_at": "2026-01-01T00:00:00Z",
        "clocks": [{"kind": "response", "due_at": NOW + 3600, "state": "running"}],
        "status": "open",
    }
    payload.update(over)
    return payload


def message(
    kind: str = "open", mid: int = 1, attempts: int = 0, remote_id: str | None = None, **payload: Any
) -> OutboxMessage:
    key = "gw-unit-t7" if kind == "open" else f"gw-unit-t7-m{mid}"
    return OutboxMessage(mid, 7, key, kind, snapshot(**payload), remote_id, attempts)


# -- a tiny JSON-schema checker (the subset the schemas below use) ----------------------

_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_errors(schema: Mapping[str, Any], value: Any, path: str = "$") -> list[str]:
    """Errors of ``value`` against ``schema`` (type, const, enum, required, properties,
    additionalProperties, items, min/maxLength, minimum/maximum). ``[]`` when valid."""
    errors: list[str] = []
    types = schema.get("type")
    if types is not None:
        wanted = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES[t](value) for t in wanted):
            return [f"{path}: {type(value).__name__} is not {types}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: above {schema['maximum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        errors += [f"{path}: missing {k}" for k in schema.get("required", ()) if k not in value]
        if schema.get("additionalProperties") is False:
            errors += [f"{path}: unexpected {k}" for k in value if k not in props]
        for k, sub in props.items():
            if k in value:
                errors += schema_errors(sub, value[k], f"{path}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(schema["items"], item, f"{path}[{i}]")
    return errors


#: PagerDuty Events API v2 event (``POST /v2/enqueue``), the subset of the documented
#: schema this connector uses, with its documented limits.
PD_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["routing_key", "event_action"],
    "additionalProperties": False,
    "properties": {
        "routing_key": {"type": "string", "minLength": 32, "maxLength": 32},
        "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
        "dedup_key": {"type": "string", "minLength": 1, "maxLength": 255},
        "client": {"type": "string"},
        "client_url": {"type": "string"},
        "links": {"type": "array"},
        "images": {"type": "array"},
        "payload": {
            "type": "object",
            "required": ["summary", "source", "severity"],
            "additionalProperties": False,
            "properties": {
                "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
                "source": {"type": "string", "minLength": 1},
                "severity": {"enum": ["critical", "error", "warning", "info"]},
                "timestamp": {"type": "string"},
                "component": {"type": "string"},
                "group": {"type": "string"},
                "class": {"type": "string"},
                "custom_details": {"type": "object"},
            },
        },
    },
}


def pd_event_errors(event: Any) -> list[str]:
    errors = schema_errors(PD_EVENT_SCHEMA, event)
    if isinstance(event, dict):
        if event.get("event_action") == "trigger" and "payload" not in event:
            errors.append("$: trigger without payload")
        if event.get("event_action") in ("acknowledge", "resolve") and not event.get("dedup_key"):
            errors.append("$: acknowledge/resolve without dedup_key")
    return errors


# -- loopback receivers ------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on loopback that records requests and answers via ``respond``."""

    respond: Callable[[Received], tuple[int, dict[str, str], bytes]]
    requests: list[Received] = field(default_factory=list)
    url: str = ""


def _serve(receiver: Receiver) -> Iterator[Receiver]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            req = Received(
                self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
            )
            receiver.requests.append(req)
            status, headers, body = receiver.respond(req)
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _json(status: int, obj: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(obj).encode()


class WebhookReceiver:
    """Fake help-desk receiver for the signed webhook.

    The webhook contract is ours, so no third-party receiver exists to test against; this
    one does what the module docstring asks of a receiver: verify the signature with the
    shared secret (401 otherwise), check the document against ``WEBHOOK_SCHEMA`` (422),
    treat a repeated ``Idempotency-Key`` as done, and answer its ticket id. ``script``
    holds canned statuses to answer first (for error tests).
    """

    def __init__(self) -> None:
        self.tickets: dict[str, str] = {}  # ticket key -> receiver's id
        self.seen: dict[str, str] = {}  # idempotency key -> receiver's id
        self.script: list[tuple[int, dict[str, str]]] = []
        self.accepted: list[dict[str, Any]] = []

    def __call__(self, req: Received) -> tuple[int, dict[str, str], bytes]:
        if self.script:
            status, headers = self.script.pop(0)
            return _json(status, {"error": "scripted"}, **headers)
        if not verify_signature(
            SECRET,
            req.headers.get(TIMESTAMP_HEADER.lower()),
            req.body,
            req.headers.get(SIGNATURE_HEADER.lower()),
        ):
            return _json(401, {"error": "bad signature"})
        doc = json.loads(req.body)
        errors = schema_errors(WEBHOOK_SCHEMA, doc)
        if errors:
            return _json(422, {"errors": errors})
        idem = req.headers[IDEMPOTENCY_HEADER.lower()]
        if idem not in self.seen:
            self.accepted.append(doc)
            self.seen[idem] = self.tickets.setdefault(doc["ticket_key"], f"WH-{len(self.tickets) + 1}")
        return _json(200, {"remote_id": self.seen[idem]})


class PagerDutyReceiver:
    """Fake PagerDuty Events API v2 endpoint.

    There is no network to PagerDuty here, so this stands in for ``/v2/enqueue``: it
    validates each event against ``PD_EVENT_SCHEMA`` (the documented v2 event schema,
    subset) and answers as PagerDuty documents it — 202 with ``status``/``message``/
    ``dedup_key``, or 400 "invalid event" with ``errors``. ``script`` holds canned
    statuses to answer first (429, 5xx).
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str]]] = []

    def __call__(self, req: Received) -> tuple[int, dict[str, str], bytes]:
        if self.script:
            status, headers = self.script.pop(0)
            return _json(status, {"status": "throttled" if status == 429 else "error"}, **headers)
        event = json.loads(req.body)
        errors = pd_event_errors(event)
        if errors:
            return _json(
                400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
            )
        self.events.append(event)
        return _json(
            202, {"status": "success", "message": "Event processed", "dedup_key": event.get("dedup_key")}
        )


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[Receiver, WebhookReceiver]]:
    logic = WebhookReceiver()
    for r in _serve(Receiver(logic)):
        yield r, logic


@pytest.fixture
def pd_receiver() -> Iterator[tuple[Receiver, PagerDutyReceiver]]:
    logic = PagerDutyReceiver()
    for r in _serve(Receiver(logic)):
        yield r, logic


# -- webhook -----------------------------------------------------------------------------


def webhook(url: str, secret: str = SECRET, **over: Any) -> Webhook:
    return Webhook(
        WebhookConfig.model_validate({"url": url + "/hook", "secret": secret, "timeout": 5.0, **over})
    )


async def test_webhook_delivery_is_signed_and_matches_the_schema(
    webhook_receiver: tuple[Receiver, WebhookReceiver],
) -> None:
    server, logic = webhook_receiver
    async with webhook(server.url, headers={"Authorization": "Bearer abc"}) as hook:
        result = await hook.deliver(message("open"))

    assert result.remote_id == "WH-1"
    [req] = server.requests
    assert req.path == "/hook"
    assert req.headers["idempotency-key"] == "gw-unit-t7"
    assert req.headers["authorization"] == "Bearer abc"
    assert req.headers["x-gateway-signature"].startswith("sha256=")
    expected = hmac.new(
        SECRET.encode(), req.headers["x-gateway-timestamp"].encode() + b"." + req.body, "sha256"
    )
    assert req.headers["x-gateway-signature"] == "sha256=" + expected.hexdigest()
    [doc] = logic.accepted
    assert (doc["kind"], doc["ticket_id"], doc["attempt"], doc["ticket"]["level"]) == ("open", 7, 1, 2)


async def test_webhook_receiver_rejects_a_tampered_body(
    webhook_receiver: tuple[Receiver, WebhookReceiver],
) -> None:
    server, logic = webhook_receiver
    async with webhook(server.url) as hook:
        await hook.deliver(message("open"))
    req = server.requests[0]
    ts, sig = req.headers["x-gateway-timestamp"], req.headers["x-gateway-signature"]
    tampered = req.body.replace(b'"level":2', b'"level":4')
    assert tampered != req.body

    assert verify_signature(SECRET, ts, req.body, sig)
    assert not verify_signature(SECRET, ts, tampered, sig)
    async with httpx.AsyncClient() as client:
        replay = await client.post(
            server.url + "/hook",
            content=tampered,
            headers={TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sig, IDEMPOTENCY_HEADER: "x"},
        )
    assert replay.status_code == 401
    assert len(logic.accepted) == 1


async def test_webhook_with_the_wrong_secret_is_a_permanent_auth_error(
    webhook_receiver: tuple[Receiver, WebhookReceiver],
) -> None:
    server, logic = webhook_receiver
    async with webhook(server.url, secret="not-the-shared-secret") as hook:
        with pytest.raises(DeliveryError) as caught:
            await hook.deliver(message("open"))
    assert (caught.value.reason, caught.value.retryable) == ("http_auth", False)
    assert logic.accepted == []


async def test_webhook_repeat_carries_the_same_idempotency_key(
    webhook_receiver: tuple[Receiver, WebhookReceiver],
) -> None:
    server, logic = webhook_receiver
    async with webhook(server.url) as hook:
        first = await hook.deliver(message("open"))
        again = await hook.deliver(message("open", attempts=1))
        resolved = await hook.deliver(
            message("resolve", mid=2, remote_id=first.remote_id, resolution="reset")
        )

    assert first.remote_id == again.remote_id == resolved.remote_id == "WH-1"
    assert [r.headers["idempotency-key"] for r in server.requests] == [
        "gw-unit-t7",
        "gw-unit-t7",
        "gw-unit-t7-m2",
    ]
    assert [d["kind"] for d in logic.accepted] == ["open", "resolve"]
    assert logic.accepted[1]["ticket_key"] == "gw-unit-t7"
    assert await hook.find_remote("gw-unit-t7") is None
    assert await hook.poll_changes(["WH-1"], 0.0) == []


@pytest.mark.parametrize(
    ("status", "headers", "reason", "retryable"),
    [
        (503, {}, "http_5xx", True),
        (429, {"Retry-After": "30"}, "http_429", True),
        (400, {}, "http_4xx", False),
        (302, {"Location": "/elsewhere"}, "http_3xx", False),
    ],
    ids=["503", "429", "400", "redirect"],
)
async def test_webhook_errors_are_classified(
    webhook_receiver: tuple[Receiver, WebhookReceiver],
    status: int,
    headers: dict[str, str],
    reason: str,
    retryable: bool,
) -> None:
    server, logic = webhook_receiver
    logic.script.append((status, headers))
    async with webhook(server.url) as hook:
        with pytest.raises(DeliveryError) as caught:
            await hook.deliver(message("open"))
    assert (caught.value.reason, caught.value.retryable) == (reason, retryable)
    if "Retry-After" in headers:
        assert "retry-after=30" in caught.value.detail


async def test_webhook_payload_mappings_are_serialised_and_junk_is_permanent(
    webhook_receiver: tuple[Receiver, WebhookReceiver],
) -> None:
    server, logic = webhook_receiver
    frozen = MappingProxyType({"kind": "response", "due_at": NOW + 60, "state": "running"})
    async with webhook(server.url) as hook:
        await hook.deliver(message("open", clocks=(frozen,)))
        with pytest.raises(DeliveryError) as caught:
            await hook.deliver(message("update", mid=2, note=object()))
    assert logic.accepted[0]["ticket"]["clocks"] == [dict(frozen)]
    assert (caught.value.reason, caught.value.retryable) == ("mapping", False)
    assert len(server.requests) == 1


TS = "1767225600"


@pytest.mark.parametrize(
    ("timestamp", "signed", "header", "now", "ok"),
    [
        (TS, (TS, b"{}"), None, NOW, True),
        (TS, (TS, b"{}"), None, NOW + 299, True),
        (TS, (TS, b"{}"), None, NOW + 301, False),
        (TS, (TS, b"{}"), None, NOW - 301, False),
        (TS, (TS, b"{ }"), None, NOW, False),
        ("1767225601", (TS, b"{}"), None, NOW, False),
        (TS, None, "sha256=00", NOW, False),
        (TS, None, "md5=00", NOW, False),
        (TS, None, "", NOW, False),
        ("not-a-number", ("not-a-number", b"{}"), None, NOW, False),
        (None, ("", b"{}"), None, NOW, False),
    ],
    ids=[
        "fresh",
        "almost-stale",
        "stale",
        "future",
        "other-body",
        "other-timestamp",
        "garbage",
        "other-scheme",
        "empty-header",
        "bad-timestamp",
        "no-timestamp",
    ],
)
def test_verify_signature_table(
    timestamp: str | None, signed: tuple[str, bytes] | None, header: str | None, now: float, ok: bool
) -> None:
    """The receiver gets body ``{}``; ``signed`` is what the signature was computed over."""
    if signed is not None:
        header = sign(SECRET, *signed)
    assert verify_signature(SECRET, timestamp, b"{}", header, now=now) is ok


def test_webhook_config_is_strict() -> None:
    with pytest.raises(ValidationError):
        WebhookConfig.model_validate({"url": "http://x", "secret": SECRET, "retries": 3})
    with pytest.raises(ValidationError):
        WebhookConfig.model_validate(
            {"url": "http://x", "secret": SECRET, "headers": {"X-Gateway-Signature": "forged"}}
        )
    with pytest.raises(ValidationError):
        WebhookConfig.model_validate({"url": "ftp://x", "secret": SECRET})
    assert SECRET not in repr(WebhookConfig.model_validate({"url": "http://x", "secret": SECRET}))


# -- PagerDuty ---------------------------------------------------------------------------


def pagerduty(url: str) -> PagerDuty:
    return PagerDuty(
        PagerDutyConfig.model_validate(
            {"routing_key": ROUTING_KEY, "url": url + "/v2/enqueue", "timeout": 5.0}
        )
    )


async def test_pagerduty_ticket_lifecycle_is_trigger_ack_resolve(
    pd_receiver: tuple[Receiver, PagerDutyReceiver],
) -> None:
    server, logic = pd_receiver
    async with pagerduty(server.url) as pd:
        opened = await pd.deliver(message("open", title="x" * 5000))
        await pd.deliver(message("comment", mid=2, remote_id=opened.remote_id, note="nothing to send"))
        await pd.deliver(message("ack", mid=3, remote_id=opened.remote_id))
        await pd.deliver(message("level", mid=4, remote_id=opened.remote_id, level=1))
        await pd.deliver(message("resolve", mid=5, remote_id=opened.remote_id, resolution="reset"))

    assert opened.remote_id == "gw-unit-t7"
    assert [e["event_action"] for e in logic.events] == ["trigger", "acknowledge", "trigger", "resolve"]
    assert {e["dedup_key"] for e in logic.events} == {"gw-unit-t7"}
    assert all(r.path == "/v2/enqueue" for r in server.requests)
    trigger = logic.events[0]["payload"]
    assert len(trigger["summary"]) == 1024
    assert (trigger["severity"], trigger["source"], trigger["group"], trigger["component"]) == (
        "error",
        "gs-12",
        "Datong mine",
        "heartbeat.lost:gs-12",
    )
    assert trigger["custom_details"]["sla_due"] == {"response": "2026-01-01T01:00:00Z"}
    assert logic.events[2]["payload"]["severity"] == "critical"


@pytest.mark.parametrize(
    ("level", "severity"),
    [(1, "critical"), (2, "error"), (3, "warning"), (4, "info")],
    ids=["critical", "major", "minor", "warning"],
)
async def test_pagerduty_severity_from_level(
    pd_receiver: tuple[Receiver, PagerDutyReceiver], level: int, severity: str
) -> None:
    server, logic = pd_receiver
    async with pagerduty(server.url) as pd:
        await pd.deliver(message("open", level=level))
    assert logic.events[0]["payload"]["severity"] == severity


@pytest.mark.parametrize(
    ("kind", "status", "action"),
    [
        ("open", "open", "trigger"),
        ("update", "open", "trigger"),
        ("update", "acknowledged", "acknowledge"),
        ("update", "resolved", "resolve"),
        ("reopen", "open", "trigger"),
        ("close", "closed", "resolve"),
        ("comment", "open", None),
    ],
    ids=["open", "update", "update-acked", "update-resolved", "reopen", "close", "comment"],
)
def test_pagerduty_action_table(kind: str, status: str, action: str | None) -> None:
    assert PagerDuty.action(message(kind, mid=2, status=status)) == action


@pytest.mark.parametrize(
    ("status", "headers", "reason", "retryable"),
    [(429, {}, "http_429", True), (500, {}, "http_5xx", True), (502, {}, "http_5xx", True)],
    ids=["429", "500", "502"],
)
async def test_pagerduty_throttling_and_outages_are_retryable(
    pd_receiver: tuple[Receiver, PagerDutyReceiver],
    status: int,
    headers: dict[str, str],
    reason: str,
    retryable: bool,
) -> None:
    server, logic = pd_receiver
    logic.script.append((status, headers))
    async with pagerduty(server.url) as pd:
        with pytest.raises(DeliveryError) as caught:
            await pd.deliver(message("open"))
        assert (caught.value.reason, caught.value.retryable) == (reason, retryable)
        assert (await pd.deliver(message("open", attempts=1))).remote_id == "gw-unit-t7"


async def test_pagerduty_invalid_event_is_permanent(pd_receiver: tuple[Receiver, PagerDutyReceiver]) -> None:
    server, _ = pd_receiver
    bad_key = PagerDuty(
        PagerDutyConfig.model_validate({"routing_key": "too-short", "url": server.url + "/v2/enqueue"})
    )
    async with bad_key as pd:
        with pytest.raises(DeliveryError) as caught:
            await pd.deliver(message("open"))
    assert (caught.value.reason, caught.value.retryable) == ("http_4xx", False)
    assert "invalid event" in caught.value.detail


async def test_pagerduty_unmappable_payload_is_permanent() -> None:
    async with pagerduty("http://127.0.0.1:9") as pd:
        with pytest.raises(DeliveryError) as caught:
            await pd.deliver(message("open", level="catastrophic"))
        assert (caught.value.reason, caught.value.retryable) == ("mapping", False)
        with pytest.raises(DeliveryError) as unknown:
            await pd.deliver(message("escalate"))
        assert (unknown.value.reason, unknown.value.retryable) == ("mapping", False)


def released_port() -> int:
    """A loopback port that was just bound and released, so nothing listens on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_nothing_listening_is_a_retryable_connect_error() -> None:
    async with pagerduty(f"http://127.0.0.1:{released_port()}") as pd:
        with pytest.raises(DeliveryError) as caught:
            await pd.deliver(message("open"))
    assert (caught.value.reason, caught.value.retryable) == ("connect", True)


# -- classify_http_error and the connector table ------------------------------------------

_REQ = httpx.Request("POST", "http://127.0.0.1/x")


@pytest.mark.parametrize(
    ("status", "exc", "reason", "retryable"),
    [
        (None, httpx.ConnectTimeout("t", request=_REQ), "timeout", True),
        (None, httpx.ReadTimeout("t", request=_REQ), "timeout", True),
        (None, httpx.PoolTimeout("t", request=_REQ), "timeout", True),
        (None, httpx.ConnectError("refused", request=_REQ), "connect", True),
        (None, httpx.ProxyError("proxy", request=_REQ), "connect", True),
        (None, httpx.ReadError("reset", request=_REQ), "network", True),
        (None, httpx.RemoteProtocolError("eof", request=_REQ), "network", True),
        (None, httpx.UnsupportedProtocol("gopher", request=_REQ), "config", False),
        (None, httpx.TooManyRedirects("loop", request=_REQ), "redirect", False),
        (None, httpx.DecodingError("gzip", request=_REQ), "bad_response", True),
        (None, KeyError("level"), "mapping", False),
        (None, ValueError("bad level"), "mapping", False),
        (None, None, "unknown", True),
        (408, None, "http_408", True),
        (429, None, "http_429", True),
        (500, None, "http_5xx", True),
        (503, None, "http_5xx", True),
        (400, None, "http_4xx", False),
        (404, None, "http_4xx", False),
        (422, None, "http_4xx", False),
        (401, None, "http_auth", False),
        (403, None, "http_auth", False),
        (301, None, "http_3xx", False),
    ],
    ids=lambda v: str(v) if isinstance(v, (int, type(None))) else type(v).__name__,
)
def test_classify_http_error_table(
    status: int | None, exc: Exception | None, reason: str, retryable: bool
) -> None:
    err = classify_http_error(status, exc)
    assert isinstance(err, DeliveryError)
    assert (err.reason, err.retryable) == (reason, retryable)


async def test_connector_table_is_static_and_complete() -> None:
    assert set(CONNECTORS) == {"django-helpdesk", "webhook", "pagerduty", "notify"}
    for type_name, spec in CONNECTORS.items():
        model, cls = spec.config_model, spec.load_factory()
        assert spec.name == type_name
        assert model.model_config.get("extra") == "forbid"
        assert model.model_fields["type"].default == type_name
        for method in ("deliver", "find_remote", "poll_changes", "aclose"):
            assert callable(getattr(cls, method))
    async with PagerDuty(PagerDutyConfig.model_validate({"routing_key": ROUTING_KEY})) as pd:
        assert isinstance(pd, HelpDesk)
    async with Webhook(
        WebhookConfig.model_validate({"url": "http://127.0.0.1:1/", "secret": SECRET})
    ) as hook:
        assert isinstance(hook, HelpDesk)
