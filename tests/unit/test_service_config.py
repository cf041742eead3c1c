"""``[service.<contract>]`` and device dates: the example's terms load, and bad input gets one
line naming the file and the key (a rule that never fires, a warranty ending before its start)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from gateway.config import build_devices, load_config
from gateway.core.warranty import DeviceDates
from gateway.errors import ConfigError
from gateway.service_config import build_aftersales
from tests.helpers import EXAMPLE

BASE = "[inventory]\ndefault_policy = 'p'\n[policies.p]\n"


def test_the_example_contracts_load() -> None:
    cfg = load_config(EXAMPLE)
    after = build_aftersales(cfg)
    med = after.contracts["medical-devices"]
    assert [s.key for s in med.schedules] == ["medical-devices/inspection", "medical-devices/visit"]
    assert [c.name for c in med.spares] == ["provide", "ship", "return_broken"]
    assert med.spares[1].calendar == "workdays-cn" and med.spares[1].seconds == 2 * 86400
    assert after.contracts["software-7x24"].terms.out_of_warranty.penalties is False  # type: ignore[union-attr]
    devices = {d.id: d for d in build_devices(cfg)}
    # The example's devices carry no dates (commented out): nothing is planned out of the box.
    cov = after.coverage(devices["core-switch-1"])
    assert cov is not None and cov.warranty_end is None
    after.dates["core-switch-1"] = DeviceDates(acceptance=date(2026, 1, 31))
    cov = after.coverage(devices["core-switch-1"])
    assert cov is not None and cov.warranty_end == date(2029, 1, 31)  # 3 years from 2026-01-31


@pytest.mark.parametrize(("text", "key", "fragment"), [
    ("[service.p]\n[[service.p.schedules]]\nkind = 'inspection'\nrule = 'every 2 months for 1 month'\n",
     "service.p.schedules[0].rule", "never fires"),
    ("[service.p]\n[[service.p.schedules]]\nkind = 'inspection'\nrule = '4 per year within the service period'\n",
     "service.p.schedules[0].rule", "no service_period"),
    ("[service.p]\n[[service.p.schedules]]\nkind = 'inspection'\nrule = 'monthly'\ncalendar = 'mars'\n",
     "service.p.schedules[0].calendar", "unknown calendar"),
    ("[service.p]\n[[service.p.schedules]]\nkind = 'audit'\nrule = 'monthly'\n",
     "service.p.schedules[0].kind", "inspection"),
    ("[service.p]\n[[service.p.schedules]]\nkind = 'visit'\nrule = 'monthly'\n[[service.p.schedules]]\nkind = 'visit'\nrule = 'weekly'\n",
     "service.p.schedules[1].id", "duplicate schedule id"),
    ("[service.p]\nwarranty = '12 parsecs'\n", "service.p.warranty", "not a length"),
    ("[service.p]\nwarranty = '3 years'\nacceptance = 2026-05-01\nwarranty_until = 2026-04-30\n",
     "service.p.warranty_until", "not after its start"),
    ("[service.p]\nwarranty = '3 years'\n[[devices]]\nid = 'a'\nacceptance = 2026-05-01\nwarranty_until = 2026-05-01\n",
     "devices[0].warranty_until", "not after its start"),
    ("[[devices]]\nid = 'a'\nwarranty = 'forever'\n", "devices[0].warranty", "not a term"),
    ("[service.p]\nwarranty = '3 years'\n[[devices]]\nid = 'a'\nacceptance = 9999-06-01\n",
     "devices[0].warranty", "after the year 9999"),
    ("[service.q]\nwarranty = '1 year'\n", "service.q", "no policy named 'q'"),
    ("[service.p.out_of_warranty]\npolicy = 'gone'\n", "service.p.out_of_warranty.policy", "no policy named 'gone'"),
    ("[service.p]\n[[service.p.spares]]\nclock = 'x'\nstarts = 'spare_requested'\nstops = ['shipped']\ntarget = '1h'\n",
     "service.p.spares[0].stops[0]", "spare_shipped"),
    ("[service.p]\n[[service.p.spares]]\nclock = 'x'\nstarts = 'spare_requested'\nstops = ['repaired']\n"
     "target = '1h'\nremind_before = '2h'\n", "service.p.spares[0].remind_before", "shorter than the target"),
])
def test_errors_name_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    f = tmp_path / "config.toml"
    f.write_text(BASE + text)
    with pytest.raises(ConfigError) as ei:
        load_config(f)
    msgs = [str(e) for e in getattr(ei.value, "errors", [ei.value])]
    assert any(m.startswith(f"{f}: {key}") and fragment in m for m in msgs), msgs
