"""Unit tests of the time-series sink's pure parts: line-protocol escaping, numbers, times,
attribute filtering, alarm/ticket points, the config section and the bounded buffer."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from influxdb_client import Point, WritePrecision
from pydantic import ValidationError

from gateway.core.alarms import Alarm, AlarmChange
from gateway.core.sla import SlaClock
from gateway.core.tickets import Ticket
from gateway.model import Device, Event, FaultLevel
from gateway.timeseries import (
    LineBuilder,
    TimeseriesConfig,
    TimeseriesSink,
    classify_status,
    escape_key,
    escape_measurement,
    escape_string,
    format_number,
    timestamp,
)

T = 1_767_225_600.123  # 2026-01-01T00:00:00.123Z
DEV = Device(id="gs-1", device_class="mine.gas-sensor", site="pit 3", region="shanxi")


def _b(**kw: object) -> LineBuilder:
    return LineBuilder(TimeseriesConfig(**kw))


def _fields(line: str | None) -> str:
    """The field section of a point: after the first unescaped space, before the timestamp."""
    assert line is not None
    head = re.match(r"(?:[^ \\]|\\.)*", line)
    assert head is not None
    return line[head.end() + 1 : line.rindex(" ")]


# ====================================================================== escaping

ESCAPES = [
    pytest.param("plain", "plain", "plain", id="plain"),
    pytest.param("pit 3", r"pit\ 3", r"pit\ 3", id="space"),
    pytest.param("a,b", r"a\,b", r"a\,b", id="comma"),
    pytest.param("k=v", r"k\=v", "k=v", id="equals-only-escaped-in-keys"),
    pytest.param('say "hi"', r'say\ "hi"', r'say\ "hi"', id="double-quotes-literal"),
    pytest.param("it's", "it's", "it's", id="single-quote"),
    pytest.param(r"C:\dir", r"C:\dir", r"C:\dir", id="inner-backslash-literal"),
    pytest.param("end\\", "end", "end", id="trailing-backslash-dropped"),
    pytest.param("two\nlines\t", r"two\nlines\t", r"two\nlines\t", id="control-chars"),
    pytest.param("矿井 3", r"矿井\ 3", r"矿井\ 3", id="unicode"),
    pytest.param("#3", "#3", "3", id="leading-hash-would-be-a-comment-line"),
]


@pytest.mark.parametrize(("raw", "key", "measurement"), ESCAPES)
def test_escaping_of_keys_tag_values_and_measurements(raw: str, key: str, measurement: str) -> None:
    assert escape_key(raw) == key
    assert escape_measurement(raw) == measurement


@pytest.mark.parametrize(("raw", "escaped"), [
    pytest.param('CH4 "high"', r'CH4 \"high\"', id="quotes"),
    pytest.param("C:\\x", "C:\\\\x", id="backslash"),
    pytest.param("a,b c=d", "a,b c=d", id="no-escaping-of-delimiters"),
])
def test_string_field_escaping(raw: str, escaped: str) -> None:
    assert escape_string(raw) == escaped


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@given(meas=_text.filter(lambda s: not s.endswith("\\") and not s.startswith("#")),
       tag=_text.filter(lambda s: not s.endswith("\\")))
def test_escaping_agrees_with_influxdb_client_point(meas: str, tag: str) -> None:
    """Same bytes as the client library's own serializer (where it writes valid lines: a
    trailing backslash or a leading ``#`` are ours to fix)."""
    ours_tag = escape_key(tag)
    point = Point(meas).tag("t", tag).field("f", 1.5).time(1000, WritePrecision.MS).to_line_protocol()
    tags = f",t={ours_tag}" if ours_tag else ""
    assert point == f"{escape_measurement(meas)}{tags} f=1.5 1000"


# ====================================================================== numbers and times


class Lvl(int):
    pass


NUMBERS = [
    pytest.param(1, "1", id="int"),
    pytest.param(-7, "-7", id="negative-int"),
    pytest.param(2**63, "9223372036854775808", id="big-int-digits-kept"),
    pytest.param(1.5, "1.5", id="float"),
    pytest.param(2.0, "2", id="whole-float"),
    pytest.param(-0.25, "-0.25", id="negative-float"),
    pytest.param(1e20, "1e+20", id="exponent"),
    pytest.param(1e-7, "1e-07", id="small-exponent"),
    pytest.param(True, "1", id="true"),
    pytest.param(False, "0", id="false"),
    pytest.param(FaultLevel.MAJOR, "2", id="int-enum"),
    pytest.param(Lvl(3), "3", id="int-subclass"),
    pytest.param(float("nan"), None, id="nan"),
    pytest.param(float("inf"), None, id="inf"),
    pytest.param(float("-inf"), None, id="-inf"),
    pytest.param("3.5", None, id="numeric-string-ignored"),
    pytest.param(None, None, id="none"),
    pytest.param([1], None, id="list"),
]


@pytest.mark.parametrize(("value", "text"), NUMBERS)
def test_format_number(value: object, text: str | None) -> None:
    assert format_number(value) == text


TIMES = [
    pytest.param("s", T, 1_767_225_600, id="s"),
    pytest.param("ms", T, 1_767_225_600_123, id="ms"),
    pytest.param("us", T, 1_767_225_600_123_000, id="us"),
    pytest.param("ns", T, 1_767_225_600_123_000_000, id="ns"),
    pytest.param("ms", 1_767_225_600.1236, 1_767_225_600_124, id="ms-rounds-to-nearest"),
    pytest.param("s", 1_767_225_600.7, 1_767_225_601, id="s-rounds-to-nearest"),
    pytest.param("ns", 1_767_225_600.000_001, 1_767_225_600_000_001_000, id="ns-keeps-microseconds"),
]


@pytest.mark.parametrize(("precision", "ts", "want"), TIMES)
def test_timestamp_precision(precision: str, ts: float, want: int) -> None:
    assert timestamp(ts, precision) == want


# ====================================================================== events


def _line(attrs: dict[str, object], name: str = "heartbeat", dev: Device = DEV, **cfg: object) -> str | None:
    return _b(**cfg).event_line(Event(T, "mqtt", dev.id, name, attrs), dev)


def test_event_line_shape() -> None:
    line = _line({"ch4": 0.42, "battery": 87, "ok": True, "state": "normal"})
    assert line == ("heartbeat,class=mine.gas-sensor,device=gs-1,region=shanxi,site=pit\\ 3 "
                    "battery=87,ch4=0.42,ok=1 1767225600123")


def test_class_measurement_and_event_tag() -> None:
    line = _line({"ch4": 0.5}, name="status", measurement="class")
    assert line == ("mine.gas-sensor,class=mine.gas-sensor,device=gs-1,event=status,region=shanxi,site=pit\\ 3 "
                    "ch4=0.5 1767225600123")


def test_awkward_device_and_names_are_escaped() -> None:
    dev = Device(id="sw 1,a=b", device_class="", site="", region='north "A"')
    line = _line({"temp c": 21.5, "x,y=z": 1}, name="status report", dev=dev)
    assert line == 'status\\ report,device=sw\\ 1\\,a\\=b,region=north\\ "A" temp\\ c=21.5,x\\,y\\=z=1 1767225600123'


def test_no_numeric_field_no_point() -> None:
    assert _line({"state": "online", "fw": "1.2"}) is None
    assert _line({"ch4": float("nan")}) is None
    assert _line({}) is None


FILTERS = [
    pytest.param({}, {"ch4", "co", "debug_seq", "rssi"}, id="default-all"),
    pytest.param({"include": ["c*"]}, {"ch4", "co"}, id="include-glob"),
    pytest.param({"exclude": ["debug_*", "rssi"]}, {"ch4", "co"}, id="exclude-globs"),
    pytest.param({"include": ["c*", "debug_*"], "exclude": ["debug_*"]}, {"ch4", "co"}, id="exclude-wins"),
    pytest.param({"include": ["CH4"]}, set(), id="case-sensitive"),
    pytest.param({"include": ["c?"]}, {"co"}, id="single-char-glob"),
    pytest.param({"tag_attributes": ["rssi"]}, {"ch4", "co", "debug_seq"}, id="tag-attribute-not-a-field"),
]


@pytest.mark.parametrize(("cfg", "fields"), FILTERS)
def test_attribute_filtering(cfg: dict[str, object], fields: set[str]) -> None:
    line = _line({"ch4": 0.1, "co": 3, "debug_seq": 9, "rssi": -70}, **cfg)
    got = set() if line is None else {kv.split("=")[0] for kv in _fields(line).split(",")}
    assert got == fields


def test_reserved_and_tag_named_attributes_are_skipped() -> None:
    line = _line({"time": 5, "_value": 1, "device": 3, "site": 4, "region": 5, "class": 6, "ch4": 0.2})
    assert _fields(line) == "ch4=0.2"
    # "event" is a tag only in class mode.
    assert _fields(_line({"event": 1, "ch4": 0.2})) == "ch4=0.2,event=1"
    assert _fields(_line({"event": 1, "ch4": 0.2}, measurement="class")) == "ch4=0.2"


def test_tag_attributes_become_sorted_tags_strings_included() -> None:
    line = _line({"shaft": "main shaft", "zone": 4, "ch4": 0.3}, tag_attributes=["shaft", "zone"])
    assert line == ("heartbeat,class=mine.gas-sensor,device=gs-1,region=shanxi,shaft=main\\ shaft,"
                    "site=pit\\ 3,zone=4 ch4=0.3 1767225600123")


def test_a_changed_device_object_refreshes_the_cached_tags() -> None:
    b = _b()
    ev = Event(T, "mqtt", "gs-1", "heartbeat", {"ch4": 0.1})
    assert ",site=pit\\ 3 " in (b.event_line(ev, DEV) or "")
    moved = Device(id="gs-1", device_class="mine.gas-sensor", site="pit 4", region="shanxi")
    assert ",site=pit\\ 4 " in (b.event_line(ev, moved) or "")


# ====================================================================== alarms and tickets


def _alarm(**kw: object) -> Alarm:
    base: dict[str, object] = {"id": 17, "key": "gs-1/gas/ch4", "device": "gs-1", "level": FaultLevel.MAJOR,
                               "state": "active", "rule_id": "ch4-alarm", "title": 'CH4 1.2 % "high"',
                               "count": 3, "first_seen": T, "last_seen": T + 60}
    return Alarm(**{**base, **kw})  # type: ignore[arg-type]


def test_alarm_raised_point() -> None:
    line = _b().alarm_line(AlarmChange("raised", _alarm()), DEV)
    assert line == ("gateway_alarm,change=raised,class=mine.gas-sensor,device=gs-1,key=gs-1/gas/ch4,level=2,"
                    "region=shanxi,rule=ch4-alarm,site=pit\\ 3,state=active "
                    'active=1,count=3,id=17,level=2,title="CH4 1.2 % \\"high\\"" 1767225600123')


def test_alarm_escalated_uses_last_seen_and_cleared_uses_cleared_at() -> None:
    b = _b(titles=False)
    esc = b.alarm_line(AlarmChange("escalated", _alarm(level=FaultLevel.CRITICAL)))
    assert esc == ("gateway_alarm,change=escalated,device=gs-1,key=gs-1/gas/ch4,level=1,rule=ch4-alarm,state=active "
                   "active=1,count=3,id=17,level=1 1767225660123")
    clr = b.alarm_line(AlarmChange("cleared", _alarm(state="cleared", cleared_at=T + 120)))
    assert clr.endswith("state=cleared active=0,count=3,id=17,level=2 1767225720123")
    # Raised and cleared in one batch: the raise point still says active.
    raised = b.alarm_line(AlarmChange("raised", _alarm(state="cleared", cleared_at=T + 120)))
    assert ",state=active " in raised and raised.endswith(" 1767225600123")


CHANGES = [
    # kind, alarm state after the batch, active field, state tag
    pytest.param("pending", "pending", "0", "pending", id="pending-is-not-a-fault-yet"),
    pytest.param("suppressed", "suppressed", "1", "suppressed", id="suppressed-is-a-real-fault"),
    pytest.param("unsuppressed", "active", "1", "active", id="unsuppressed"),
    pytest.param("flapping", "active", "1", "active", id="flapping"),
    pytest.param("cleared", "cleared", "0", "cleared", id="cleared"),
]


@pytest.mark.parametrize(("kind", "alarm_state", "active", "state"), CHANGES)
def test_every_change_kind_is_written_at_its_own_time(kind: str, alarm_state: str, active: str, state: str) -> None:
    line = _b().alarm_line(AlarmChange(kind, _alarm(state=alarm_state), T + 5, "why"))
    assert f",change={kind}," in line and f",state={state} " in line
    assert _fields(line) == f'active={active},count=3,id=17,level=2,note="why",title="CH4 1.2 % \\"high\\""'
    assert line.endswith(" 1767225605123")


def test_alarm_key_as_field_when_not_a_tag() -> None:
    line = _b(alarm_key_tag=False, titles=False).alarm_line(AlarmChange("raised", _alarm(key='a b,"c"')))
    assert ",key=" not in line.split(" ")[0]
    assert 'key="a b,\\"c\\""' in line


def test_ticket_point() -> None:
    t = Ticket(id=5, alarm_id=17, alarm_key="gs-1/gas/ch4", device="gs-1", site="pit 3", region="shanxi",
               level=FaultLevel.MAJOR, status="acknowledged", policy="mine-monitoring", title="CH4",
               opened_at=T, updated_at=T + 30, paused=True,
               clocks=[SlaClock(kind="response", target=3600, calendar="24x7", started_at=T, due_at=T + 3600,
                                breached_at=T + 3600)])
    line = _b().ticket_line(t, DEV)
    assert line == ("gateway_ticket,class=mine.gas-sensor,device=gs-1,level=2,policy=mine-monitoring,region=shanxi,"
                    'site=pit\\ 3,status=acknowledged breached=1,id=5,level=2,open=1,paused=1,title="CH4" 1767225630123')


# ====================================================================== HTTP statuses

STATUSES = [
    pytest.param(500, True, id="500"), pytest.param(502, True, id="502"), pytest.param(503, True, id="503"),
    pytest.param(504, True, id="504"), pytest.param(429, True, id="429"), pytest.param(408, True, id="408"),
    pytest.param(400, False, id="400"), pytest.param(401, False, id="401"), pytest.param(403, False, id="403"),
    pytest.param(404, False, id="404"), pytest.param(413, False, id="413"), pytest.param(422, False, id="422"),
]


@pytest.mark.parametrize(("status", "retryable"), STATUSES)
def test_classify_status(status: int, retryable: bool) -> None:
    ok, reason = classify_status(status)
    assert ok is retryable and reason


# ====================================================================== config


def test_defaults_are_off_and_sane() -> None:
    cfg = TimeseriesConfig()
    assert not cfg.enabled and cfg.precision == "ms" and cfg.event_names == ["heartbeat", "status", "alarm"]
    assert "secret" not in repr(TimeseriesConfig(token="secret"))


def test_durations_accept_the_config_syntax() -> None:
    cfg = TimeseriesConfig(flush_interval="10s", retry_max="2m", timeout=3)
    assert (cfg.flush_interval, cfg.retry_max, cfg.timeout) == (10.0, 120.0, 3.0)


BAD = [
    pytest.param({"nope": 1}, "nope", id="unknown-key"),
    pytest.param({"url": "127.0.0.1:8086"}, "url", id="url-scheme"),
    pytest.param({"precision": "m"}, "precision", id="precision"),
    pytest.param({"batch_size": 500, "buffer_size": 100}, "buffer_size", id="batch-over-buffer"),
    pytest.param({"retry_min": 10, "retry_max": 1}, "retry_max", id="retry-order"),
    pytest.param({"alarm_measurement": "heartbeat"}, "event name", id="measurement-clash"),
    pytest.param({"alarm_measurement": "x", "ticket_measurement": "x"}, "differ", id="same-measurements"),
    pytest.param({"flush_interval": 0}, "flush_interval", id="zero-interval"),
    pytest.param({"measurement": "device"}, "measurement", id="measurement-mode"),
]


@pytest.mark.parametrize(("kw", "says"), BAD)
def test_bad_config_is_refused(kw: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        TimeseriesConfig(**kw)


def test_class_mode_allows_an_event_named_like_a_transition_measurement() -> None:
    TimeseriesConfig(measurement="class", alarm_measurement="alarm")


# ====================================================================== the bounded buffer (no server)


def test_offer_event_takes_only_telemetry_and_drops_the_oldest_when_full() -> None:
    sink = TimeseriesSink(TimeseriesConfig(enabled=True, buffer_size=5, batch_size=2))
    assert not sink.offer_event(Event(T, "snmp", "gs-1", "IF-MIB::linkDown", {"ifIndex": 1}), DEV)
    assert not sink.offer_event(Event(T, "mqtt", "gs-1", "heartbeat", {}), DEV)
    for i in range(8):
        assert sink.offer_event(Event(T + i, "mqtt", "gs-1", "heartbeat", {"seq": i}), DEV)
    st = sink.stats()
    assert (st["offered"], st["dropped"], st["buffered"], st["healthy"]) == (8, 3, 5, 1)
    lines = sink._build(list(sink._events))
    assert [_fields(ln) for ln in lines] == [f"seq={i}" for i in range(3, 8)]


def test_on_commit_buffers_transitions_apart_from_telemetry() -> None:
    sink = TimeseriesSink(TimeseriesConfig(enabled=True, buffer_size=2, batch_size=1), resolve=lambda d: DEV)
    for i in range(3):
        sink.offer_event(Event(T + i, "mqtt", "gs-1", "heartbeat", {"seq": i}), DEV)
    sink.on_commit([], [], [AlarmChange("raised", _alarm()), AlarmChange("repeated", _alarm()), ("ticket", "notice")])
    st = sink.stats()
    # A telemetry flood cannot push fault points out; repeats are not transitions.
    assert (st["transitions"], st["dropped"], st["buffered"]) == (1, 1, 3)
    assert sink._marks[0].startswith("gateway_alarm,change=raised,class=mine.gas-sensor,")
