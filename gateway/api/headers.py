"""Security headers on every HTTP response (the board, its static files, the API, errors).

The board's policy allows only the gateway's own origin: scripts and styles from
``/static``, data only from the API and the change stream, no framing. The optional
Swagger UI page (``[api] docs = true``) is the one exception: it loads its scripts and
styles from a public CDN and starts itself with an inline script.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BOARD_CSP", "DOCS_CSP", "DOCS_PATH", "SecurityHeaders"]

BOARD_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS_PATH = "/api/v1/docs"
_CDN = "https://cdn.jsdelivr.net"
DOCS_CSP = (
    f"default-src 'self'; img-src 'self' data: https://fastapi.tiangolo.com; style-src 'self' {_CDN}; "
    f"script-src 'self' 'unsafe-inline' {_CDN}; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


class SecurityHeaders:
    """ASGI middleware: adds CSP, ``nosniff``, ``X-Frame-Options`` and ``Referrer-Policy``
    to every response that does not set them itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = (DOCS_CSP if scope.get("path") == DOCS_PATH else BOARD_CSP).encode()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {k.lower() for k, _ in headers}
                for k, v in (*_COMMON, (b"content-security-policy", csp)):
                    if k not in present:
                        headers.append((k, v))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
