"""The lean v2c GET codec against pysnmp, the reference: requests byte for byte, answers value
for value (answers made by pysnmp and by a real net-snmp agent)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto.api import v2c

from adapters.poll.getpdu import SYS_UPTIME, decode_answer, encode_get
from adapters.snmp import ber
from gateway.errors import DecodeError
from tests.fixtures.snmpd import Snmpd


def _pysnmp_get(community: str, rid: int) -> bytes:
    pdu = v2c.GetRequestPDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, rid)
    v2c.apiPDU.set_varbinds(pdu, [(SYS_UPTIME, v2c.null)])
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, community)
    v2c.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


def _pysnmp_response(community: str, rid: int, value: object) -> bytes:
    pdu = v2c.ResponsePDU()
    v2c.apiPDU.set_defaults(pdu)
    v2c.apiPDU.set_request_id(pdu, rid)
    v2c.apiPDU.set_varbinds(pdu, [(SYS_UPTIME, value)])
    msg = v2c.Message()
    v2c.apiMessage.set_defaults(msg)
    v2c.apiMessage.set_community(msg, community)
    v2c.apiMessage.set_pdu(msg, pdu)
    return bytes(encoder.encode(msg))


@pytest.mark.parametrize("rid", [0, 1, 127, 128, 255, 256, 32767, 32768, 65535, 8_388_608, 2**31 - 1])
@pytest.mark.parametrize("community", ["public", "", "c" * 200])
def test_requests_are_byte_identical_to_pysnmp(rid: int, community: str) -> None:
    assert encode_get(community.encode(), rid) == _pysnmp_get(community, rid)


@pytest.mark.parametrize("ticks", [0, 1, 4711, 2**31, 2**32 - 1])
def test_answers_decode_as_pysnmp_does(ticks: int) -> None:
    data = _pysnmp_response("public", 99, v2c.TimeTicks(ticks))
    ans = decode_answer(data)
    msg, _ = decoder.decode(data, asn1Spec=v2c.Message())
    ref = v2c.apiPDU.get_varbinds(v2c.apiMessage.get_pdu(msg))[0][1]
    assert (ans.request_id, ans.community, ans.uptime) == (99, b"public", int(ref))


def test_no_such_object_is_an_answer_without_uptime() -> None:
    ans = decode_answer(_pysnmp_response("public", 5, v2c.NoSuchObject("")))
    assert ans.uptime is None and ans.request_id == 5


def test_what_is_not_a_response_is_refused() -> None:
    with pytest.raises(DecodeError) as e:
        decode_answer(encode_get(b"public", 1))
    assert e.value.reason == "unsupported_pdu"
    with pytest.raises(DecodeError):
        decode_answer(b"\x30\x03\x02\x01")


def test_out_of_range_request_ids_are_refused() -> None:
    with pytest.raises(ValueError):
        encode_get(b"public", -1)
    with pytest.raises(ValueError):
        encode_get(b"public", 2**31)
    with pytest.raises(ValueError):
        encode_get(b"public", 1, version=ber.V3)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Snmpd]:
    a = Snmpd(tmp_path / "snmpd").start()
    yield a
    a.stop()


def test_a_real_agent_answers_our_request_and_both_decoders_agree(agent: Snmpd) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(encode_get(b"public", 12345), ("127.0.0.1", agent.port))
        data = s.recv(2048)
    ans = decode_answer(data)
    msg, _ = decoder.decode(data, asn1Spec=v2c.Message())
    pdu = v2c.apiMessage.get_pdu(msg)
    assert ans.request_id == int(v2c.apiPDU.get_request_id(pdu)) == 12345
    assert ans.uptime == int(v2c.apiPDU.get_varbinds(pdu)[0][1])
    assert ans.uptime is not None and ans.uptime >= 0
