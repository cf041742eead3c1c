# The compiled VarBindList loop (_cber.c); ber._varbinds_py is its reference.
from typing import Any

def varbinds(
    data: bytes, start: int, end: int, v2: bool, oid_cache: dict[bytes, str], oid_cache_max: int, ipaddress: type[str], /
) -> list[tuple[str, Any]] | None: ...
