"""The gateway's exception tree (leaf module).

::

    GatewayError
    ├── ConfigError(file, key)        bad configuration: names the file and the dotted key
    ├── AdapterError
    │   └── DecodeError(peer, reason) bad bytes from a device; counted, never fatal
    ├── StoreError                    the database failed
    └── DeliveryError(retryable, reason)  the help desk refused or could not be reached
"""

from __future__ import annotations

__all__ = ["AdapterError", "ConfigError", "DecodeError", "DeliveryError", "GatewayError", "StoreError"]


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """Invalid configuration. ``str()`` reads ``file: dotted.key: problem``."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


class AdapterError(GatewayError):
    """A protocol adapter failed."""


class DecodeError(AdapterError):
    """Bytes that do not decode; ``reason`` is a short counter label."""

    def __init__(self, reason: str, detail: str = "", peer: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.peer = peer
        msg = reason if not detail else f"{reason}: {detail}"
        if peer:
            msg = f"{msg} (from {peer})"
        super().__init__(msg)


class StoreError(GatewayError):
    """The store could not read or write."""


class DeliveryError(GatewayError):
    """A help-desk delivery failed; ``retryable`` says whether trying again can help."""

    def __init__(self, reason: str, retryable: bool, detail: str = "") -> None:
        self.reason = reason
        self.retryable = retryable
        self.detail = detail
        super().__init__(f"{reason} ({'retryable' if retryable else 'permanent'}){': ' + detail if detail else ''}")
