"""[[teams]], [people] and escalation steps in the config: built into the pure Staffing, and
bad entries refused with the file and the key."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.config import build_staffing, config_from_dict
from gateway.errors import ConfigError
from tests.helpers import base_config


def _cfg(**sections: Any) -> Any:
    d = base_config("/tmp/unused-data-dir")  # never opened: only parsed
    d["gateway"]["timezone"] = "Asia/Shanghai"
    d.update(sections)
    return config_from_dict(d, "people.toml")


def test_teams_rota_overrides_and_steps_are_built() -> None:
    cfg = _cfg(
        teams=[{"name": "noc", "lead": "li", "members": ["a", "b"], "sites": ["pit-*"],
                "rota": [{"days": "mon-fri", "start": "08:00", "end": "20:00", "user": "a"}],
                "overrides": [{"start": datetime(2026, 10, 1, 8), "end": datetime(2026, 10, 8, 8), "user": "b"}]}],
        people={"service_manager": "wang", "experts": ["dr"], "notify_connector": "notify"},
        escalation=[{"id": "lead-80", "clock": "response", "at": 0.8, "notify": "team_lead"}],
    )
    s = build_staffing(cfg)
    assert s.team_for("pit-3", "mine-monitoring") == "noc" and s.team_for("hq", "mine-monitoring") == ""
    noc = s.team("noc")
    assert noc is not None
    cst = ZoneInfo("Asia/Shanghai")
    assert noc.on_call(datetime(2026, 10, 2, 12, tzinfo=cst).timestamp()) == "b"  # the override, local time
    assert noc.on_call(datetime(2026, 10, 12, 9, tzinfo=cst).timestamp()) == "a"  # a Monday
    assert [x.id for x in s.steps["*"]] == ["lead-80"]
    assert (s.service_manager, s.experts) == ("wang", ("dr",))
    assert cfg.people.notify_connector == "notify"


@pytest.mark.parametrize(
    ("sections", "key", "text"),
    [
        ({"teams": [{"name": "a"}, {"name": "a"}]}, "teams[1].name", "duplicate team name"),
        ({"teams": [{"name": "a", "rota": [{"days": "funday", "user": "x"}]}]}, "teams[0].rota[0]", "not a day"),
        ({"teams": [{"name": "a", "rota": [{"start": "8am", "user": "x"}]}]}, "teams[0].rota[0]", "HH:MM"),
        ({"escalation": [{"id": "x", "clock": "response", "at": 0.5, "after": "1h"}]}, "escalation[0]", "either clock"),
        ({"escalation": [{"id": "x", "clock": "response"}]}, "escalation[0]", "needs at"),
        ({"escalation": [{"id": "x", "after": "0s"}, {"id": "x", "after": "1h"}]}, "escalation[1].id", "duplicate"),
        ({"escalation": [{"id": "x", "after": "1h", "action": "panic"}]}, "escalation[0].action", ""),
    ],
)
def test_bad_people_config_names_the_key(sections: dict[str, Any], key: str, text: str) -> None:
    with pytest.raises(ConfigError) as e:
        _cfg(**sections)
    assert key in str(e.value) and text in str(e.value) and "people.toml" in str(e.value)
