"""Named accounts: password hashing (scrypt), secrets for sessions and personal API tokens,
and the roles.

Passwords are kept as ``scrypt$N$r$p$salt$hash`` (hashlib.scrypt, N = 2**14, r = 8, p = 1,
a 16-byte random salt); personal tokens and session ids are random 256-bit secrets kept
only as SHA-256 digests (a stolen database holds nothing that signs anybody in).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

__all__ = [
    "ACTING_ROLES",
    "NAME_RE",
    "ROLES",
    "digest",
    "hash_password",
    "new_password",
    "new_secret",
    "verify_password",
]

#: viewer: reads; operator: reads and acts; admin: also manages accounts; customer: reads its
#: own sites and contracts only.
ROLES = ("viewer", "operator", "admin", "customer")
ACTING_ROLES = ("operator", "admin")
#: Account names: a letter or digit first, then letters, digits, ``. _ -`` (at most 64).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

_N, _R, _P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024
#: A hash of a random password: names that do not exist still cost one scrypt, so the
#: answer time does not tell which names exist.
_DUMMY: str | None = None


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def hash_password(password: str) -> str:
    """A new salted scrypt hash of ``password``."""
    salt = secrets.token_bytes(16)
    h = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(h)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant time; ``False`` for a malformed or
    empty hash, after the same work as a real check)."""
    global _DUMMY
    try:
        scheme, n, r, p, salt, want = stored.split("$")
        if scheme != "scrypt":
            raise ValueError(scheme)
        got = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), maxmem=_MAXMEM, dklen=len(_unb64(want))
        )
        return hmac.compare_digest(got, _unb64(want))
    except (ValueError, TypeError):
        if _DUMMY is None:
            _DUMMY = hash_password(secrets.token_urlsafe(16))
        verify_password(password, _DUMMY)
        return False


def new_secret(prefix: str = "") -> str:
    """A random 256-bit secret (URL-safe), with an optional recognisable prefix."""
    return prefix + secrets.token_urlsafe(32)


def new_password() -> str:
    """A random password for a reset (shown once)."""
    return secrets.token_urlsafe(12)


def digest(secret: str) -> str:
    """The stored form of a token or session id: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()
