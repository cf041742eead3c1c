"""Delivery keys packed into rows (``gateway.store.sql.pack_keys``) read back as they were
written, whatever characters the keys hold, and rows written one key each still read."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.store.sql import KEYS_PER_ROW, pack_keys, unpack_keys

_keys = st.lists(st.text(alphabet=st.sampled_from("ab\\n\n\\x"), max_size=6), max_size=40)


@given(_keys, _keys)
def test_packed_rows_read_back_each_key_with_its_latest_time(first: list[str], second: list[str]) -> None:
    rows = pack_keys([(k, 1.0) for k in first]) + pack_keys([(k, 2.0) for k in second])
    latest = {k: 1.0 for k in first} | {k: 2.0 for k in second}
    got = unpack_keys(rows)
    assert dict(got) == latest
    assert len(got) == len(latest)
    assert [at for _, at in got] == sorted(at for _, at in got)


def test_one_batch_writes_a_row_per_sixteen_keys_and_a_lone_key_as_itself() -> None:
    keys = [(f"snmp-inform:snmp:{i:032x}", 5.0) for i in range(KEYS_PER_ROW * 2 + 1)]
    assert len(pack_keys(keys)) == 3
    assert pack_keys([("k", 5.0)]) == [("k", 5.0)]
    assert unpack_keys([("k", 1.0), ("old-row", 2.0)]) == [("k", 1.0), ("old-row", 2.0)]
