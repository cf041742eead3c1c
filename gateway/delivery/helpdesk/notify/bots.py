"""The chat bots Chinese teams read — DingTalk (钉钉), WeCom (企业微信) group bots and Feishu (飞书) —
as request builders and response checks, pure (the connector does the HTTP).

Why not apprise for these three: its plugins take any HTTP 200 as success, but these services
answer a refused message (bad signature, wrong keyword, throttled) with HTTP 200 and a non-zero
``errcode``/``code`` — the message would be marked delivered and lost. Feishu's plugin does not
sign either. Everything else (e-mail above all) goes through apprise.

URL forms (the same as apprise's): ``dingtalk://TOKEN/`` or ``dingtalk://SECRET@TOKEN/``
(signed), ``wecombot://KEY``, ``feishu://TOKEN/`` or ``feishu://TOKEN/?secret=SECRET`` (signed).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["ENDPOINTS", "Bot", "BotRefusal", "check", "dingtalk_sign", "feishu_sign", "parse_bot", "request"]

#: Vendor endpoints by scheme (``endpoints`` in the config replaces them, e.g. for a private
#: deployment or a proxy).
ENDPOINTS = {
    "dingtalk": "https://oapi.dingtalk.com/robot/send",
    "wecombot": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send",
    "feishu": "https://open.feishu.cn/open-apis/bot/v2/hook/",
}

#: Vendor codes that mean "too fast, try later" (everything else non-zero is a refusal).
_THROTTLED = {"dingtalk": {130101, 130102}, "wecombot": {45009, 45033}, "feishu": {9499, 11232, 11233}}


@dataclass(frozen=True, slots=True)
class Bot:
    kind: str  # dingtalk | wecombot | feishu
    token: str
    secret: str = ""


@dataclass(frozen=True, slots=True)
class BotRefusal:
    """The service did not take the message; ``retryable`` when it may later."""

    retryable: bool
    detail: str


def parse_bot(url: str) -> Bot | None:
    """The bot a URL names, or ``None`` when it is not one of the three."""
    parts = urlsplit(url)
    if parts.scheme not in ENDPOINTS:
        return None
    if parts.scheme == "dingtalk":
        secret = unquote(parts.username or "")
        token = (parts.hostname or "") + parts.path
        return Bot("dingtalk", token.strip("/"), secret)
    token = (parts.netloc + parts.path).strip("/")
    secret = (parse_qs(parts.query).get("secret") or [""])[0]
    return Bot(parts.scheme, token, secret)


def dingtalk_sign(timestamp_ms: int, secret: str) -> str:
    """DingTalk's ``sign``: HMAC-SHA256 keyed with the secret over ``"{timestamp}\\n{secret}"``,
    base64 (sent URL-encoded as a query parameter with ``timestamp`` in milliseconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def feishu_sign(timestamp: int, secret: str) -> str:
    """Feishu's ``sign``: HMAC-SHA256 keyed with ``"{timestamp}\\n{secret}"`` over an empty
    message, base64 (sent in the JSON body with ``timestamp`` in seconds)."""
    return base64.b64encode(hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()


def request(bot: Bot, endpoint: str, title: str, body: str, now: float) -> tuple[str, dict[str, str], dict[str, Any]]:
    """(url, query parameters, JSON body) of one text message."""
    text = f"{title}\n{body}"
    if bot.kind == "dingtalk":
        params = {"access_token": bot.token}
        if bot.secret:
            ts = int(now * 1000)
            params |= {"timestamp": str(ts), "sign": dingtalk_sign(ts, bot.secret)}
        return endpoint, params, {"msgtype": "text", "text": {"content": text}}
    if bot.kind == "wecombot":
        return endpoint, {"key": bot.token}, {"msgtype": "text", "text": {"content": text}}
    payload: dict[str, Any] = {"msg_type": "text", "content": {"text": text}}
    if bot.secret:
        ts = int(now)
        payload = {"timestamp": str(ts), "sign": feishu_sign(ts, bot.secret), **payload}
    return endpoint.rstrip("/") + "/" + bot.token, {}, payload


def check(bot: Bot, status: int, answer: Any) -> BotRefusal | None:
    """``None`` when the service took the message, else why not."""
    if status == 429 or status >= 500:
        return BotRefusal(True, f"{bot.kind}: HTTP {status}")
    if status >= 400:
        return BotRefusal(False, f"{bot.kind}: HTTP {status}")
    if not isinstance(answer, dict):
        return BotRefusal(True, f"{bot.kind}: not a JSON answer")
    raw: Any = answer.get("errcode", answer.get("code", answer.get("StatusCode", 0)))
    try:
        code = int(raw)
    except (TypeError, ValueError):
        return BotRefusal(True, f"{bot.kind}: odd answer {str(answer)[:120]}")
    if code == 0:
        return None
    msg = str(answer.get("errmsg") or answer.get("msg") or answer.get("StatusMessage") or "")
    return BotRefusal(code in _THROTTLED[bot.kind], f"{bot.kind}: code {code} {msg}"[:200])
