"""Schemathesis against a running gateway's OpenAPI spec: whatever the generated input, the
API answers without a 5xx, with a status code, content type and body its spec declares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks
from schemathesis.schemas import APIOperation

from gateway.model import Event
from tests.fixtures.api import OP, GatewayThread, api_config
from tests.fixtures.netsnmp import free_udp_port
from tests.helpers import wait_until

#: Examples per operation: enough to reach the validation paths, bounded so the module stays short.
EXAMPLES = 20
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    """One gateway for the module, holding an alarm and a ticket so that ids 1.. exist."""
    tmp: Path = tmp_path_factory.mktemp("api-fuzz")
    gt = GatewayThread(api_config(tmp, free_udp_port())).start()
    gw = gt.gw
    assert gw is not None

    async def seed() -> bool:
        return gw.pipeline.offer(Event(gw.clock.now(), "test", "gas-1", "heartbeat.lost", {}))

    assert gt.run(seed())
    wait_until(lambda: gw.store.list_tickets())
    yield gt
    gt.stop()


@pytest.fixture(scope="module")
def api_schema(gateway: GatewayThread) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{gateway.url}/api/v1/openapi.json")


def operations(api_schema: schemathesis.BaseSchema) -> list[APIOperation]:
    """Every operation in the spec but the change stream (it never ends, by design; its
    parameters are covered in test_api.py)."""
    ops = [r.ok() for r in api_schema.get_all_operations()]
    return [op for op in ops if op.path != "/api/v1/events/stream"]


def negatable(op: APIOperation) -> bool:
    """Whether the operation has input that can be made invalid (a parameter or a body)."""
    return bool(list(op.iter_parameters()) or op.get_request_payload_content_types())


# schemathesis.pytest.from_fixture() fails under pytest 9 (it sets Function._nodeid), so
# the operations are driven here, one subtest each, with Hypothesis settings of our own.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_no_server_error_and_responses_match_the_spec(
    api_schema: schemathesis.BaseSchema, mode: GenerationMode, subtests: pytest.Subtests
) -> None:
    ops = operations(api_schema)
    assert len(ops) >= 15, [op.label for op in ops]
    for op in ops:
        if mode is GenerationMode.NEGATIVE and not negatable(op):
            continue
        with subtests.test(op.label):

            @given(case=op.as_strategy(mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            def fuzz(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=OP, checks=CHECKS, timeout=10)

            fuzz()


@pytest.mark.parametrize(
    "method, path, body, field",
    [
        ("GET", f"/api/v1/tickets/{2**64}", None, "path.ticket_id"),
        ("POST", f"/api/v1/alarms/{2**70}/ack", None, "path.alarm_id"),
        ("POST", f"/api/v1/outbox/{2**63}/discard", None, "path.message_id"),
        ("POST", "/api/v1/tickets/1/acknowledge", b"\xff\xfe\x00", "body"),
        ("POST", "/api/v1/maintenance", b"\xc3", "body"),
    ],
    ids=["huge-ticket-id", "huge-alarm-id", "huge-outbox-id", "ticket-body-not-utf8",
         "maintenance-body-not-utf8"],
)
def test_found_by_fuzzing_answers_422_naming_the_field(
    gateway: GatewayThread, method: str, path: str, body: bytes | None, field: str
) -> None:
    headers = {**OP, "Content-Type": "application/json"}
    r = httpx.request(method, gateway.url + path, content=body, headers=headers, timeout=10)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_input" and r.json()["message"].startswith(f"{field}:")
