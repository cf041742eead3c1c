"""Hostile text in the help desk (issue 21 item 5): device-supplied and operator-written text
that the gateway sends to a real django-helpdesk 2.6.1 (which renders ticket descriptions and
follow-ups as Markdown) shows there as text: no tag, no link, no remote image. Checked on the
ticket page an agent sees, logged in through the help desk's own login form."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx

from gateway.delivery.helpdesk import DjangoHelpdesk, DjangoHelpdeskConfig, OutboxMessage
from tests.fixtures.helpdesk import HelpdeskServer

IMG = "<img src=x onerror=alert(1)>"
PIXEL = "![seen](http://tracker.example/pixel.png)"
LINK = "[reset your password](http://phish.example/login)"
SCRIPT = "<script>alert('note')</script>"


def _payload(**over: Any) -> dict[str, Any]:
    p: dict[str, Any] = {
        "title": f"Interface 7 ({IMG}) down on sw-7",
        "description": f"ifDescr {IMG} {PIXEL}",
        "device": f"sw-7 {LINK}",
        "site": f"hq {PIXEL}",
        "level": 2,
        "alarm_key": f"sw-7/if/{IMG}",
        "first_event": "linkDown",
        "count": 1,
        "opened_at": "2026-01-01T00:00:00Z",
        "status": "open",
    }
    p.update(over)
    return p


def _agent_page(server: HelpdeskServer, path: str) -> str:
    """``path`` as the agent's browser gets it, after logging in with the login form."""
    with httpx.Client(base_url=server.url, timeout=20, follow_redirects=True) as web:
        form = web.get("/helpdesk/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token, form.text[:500]
        r = web.post("/helpdesk/login/", data={"username": "agent", "password": "not-used-agent",
                                                "csrfmiddlewaretoken": token.group(1), "next": path},
                     headers={"Referer": f"{server.url}/helpdesk/login/"})
        assert r.status_code == 200 and "logout" in r.text.lower(), r.text[:500]
        return web.get(path).text


async def test_device_and_operator_text_is_inert_in_the_help_desk(helpdesk_server: HelpdeskServer) -> None:
    key = f"gw-{uuid.uuid4().hex[:10]}-t1"
    cfg = DjangoHelpdeskConfig(url=helpdesk_server.url, token=helpdesk_server.token,
                               queue=helpdesk_server.queue_id, timeout=10.0)
    async with DjangoHelpdesk(cfg) as desk:
        opened = await desk.deliver(OutboxMessage(1, 1, key, "open", _payload(), None, 0))
        remote = opened.remote_id
        assert remote is not None
        await desk.deliver(OutboxMessage(2, 1, f"{key}-m2", "comment",
                                         _payload(note=f"{SCRIPT} {LINK} {PIXEL}"), remote, 0))
    page = _agent_page(helpdesk_server, f"/helpdesk/tickets/{remote}/")
    # Shown as text, as the device and the operator wrote it.
    assert "ifDescr &lt;img src=x onerror=alert(1)&gt; ![seen](http://tracker.example/pixel.png)" in page
    assert "Device: sw-7 [reset your password](http://phish.example/login)" in page
    assert "&lt;script&gt;alert('note')&lt;/script&gt;" in page
    for raw in ("<img src=x", "<script>alert", 'src="http://tracker.example', 'href="http://phish.example'):
        assert raw not in page, raw
