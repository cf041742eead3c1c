"""A small HTTP client for the gateway's own API (for the CLI): config's host/port and tokens."""

from __future__ import annotations

from typing import Any

import httpx

__all__ = ["ApiClient", "ApiClientError"]


class ApiClientError(Exception):
    """The API answered with an error (``status`` > 0) or could not be reached (``status`` 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


def _token_for(cfg: Any, role: str) -> str | None:
    """The first token with ``role``; an operator token also serves for reading."""
    roles = ("viewer", "operator") if role == "viewer" else ("operator",)
    for want in roles:
        for t in cfg.api.tokens:
            if t.role == want:
                return t.token.get_secret_value()  # type: ignore[no-any-return]
    return None


def base_url(cfg: Any) -> str:
    """``http://host:port`` of the configured API (wildcard addresses become loopback)."""
    host = cfg.api.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{cfg.api.port}"


class ApiClient:
    """Calls ``/api/v1`` of the gateway described by ``cfg``.

    Args:
        cfg: the loaded ``Config``.
        role: ``viewer`` for reads, ``operator`` for actions; picks the first token of
            that role from ``[[api.tokens]]``.
        timeout: seconds per request.

    Example::

        client = ApiClient(cfg, role="operator")
        client.post("/tickets/7/acknowledge", {"note": "on it"})
    """

    def __init__(self, cfg: Any, role: str = "viewer", timeout: float = 10.0, transport: Any = None) -> None:
        self.url = base_url(cfg)
        self.role = role
        token = _token_for(cfg, role)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.url + "/api/v1", headers=headers, timeout=timeout, transport=transport
        )
        self.has_token = token is not None

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _do(self, method: str, path: str, **kw: Any) -> Any:
        if not self.has_token:
            raise ApiClientError(0, f"no [[api.tokens]] entry with role {self.role!r} in the config")
        try:
            r = self._http.request(method, path if path.startswith("/") else "/" + path, **kw)
        except httpx.HTTPError as e:
            raise ApiClientError(0, f"cannot reach the gateway API at {self.url}: {e}") from e
        if r.status_code >= 400:
            try:
                msg = r.json().get("message") or r.text
            except ValueError:
                msg = r.text
            raise ApiClientError(r.status_code, msg)
        return r.json() if r.content else None

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``/api/v1{path}``; returns the decoded JSON (raises ApiClientError)."""
        return self._do("GET", path, params=params)

    def post(self, path: str, json: Any = None) -> Any:
        """POST ``/api/v1{path}`` with a JSON body; returns the decoded JSON (raises ApiClientError)."""
        return self._do("POST", path, json=json)
