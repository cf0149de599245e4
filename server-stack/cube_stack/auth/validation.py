"""Pure parsers for request fields: typed getters over a decoded JSON object, paging and durations.

Every failure is a :class:`MalformedError` naming the field, what was found and what was wanted, so a
hostile or careless body (wrong types, huge strings, nested junk) becomes a 400 and never a 500.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from cube_stack.auth.errors import MalformedError

MAX_TEXT = 1024  # longest free-text field (names, descriptions), as SuperMQ's 1024-character limit
MAX_LIST = 100  # most items in a list field (tags, member ids, scopes)
MAX_LIMIT = 100  # page size cap, as SuperMQ (1..100)

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d|w)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,  # our extension: Go's time.ParseDuration rejects "d" although the spec allows it
    "w": 604800.0,  # our extension, as "d"
}


def _missing(key: str) -> MalformedError:
    return MalformedError(f"missing {key}", code="auth.missing_field")


def _invalid(key: str, wanted: str, value: object) -> MalformedError:
    found = type(value).__name__ if not isinstance(value, str) else f"a string of {len(value)} characters"
    return MalformedError(f"invalid {key}: expected {wanted}, got {found}", code="auth.invalid_field")


def require_object(value: object, key: str = "body") -> dict[str, Any]:
    """Return ``value`` if it is a JSON object, else raise naming ``key``."""
    if not isinstance(value, dict):
        raise _invalid(key, "a JSON object", value)
    return value


def get_str(
    body: Mapping[str, Any], key: str, *, required: bool = False, max_len: int = MAX_TEXT
) -> str | None:
    """Return the string at ``key`` (``None`` when absent and optional); reject other types and long text."""
    value = body.get(key)
    if value is None:
        if required:
            raise _missing(key)
        return None
    if not isinstance(value, str) or len(value) > max_len:
        raise _invalid(key, f"a string of at most {max_len} characters", value)
    if required and not value:
        raise _missing(key)
    return value


def require_str(body: Mapping[str, Any], key: str, *, max_len: int = MAX_TEXT) -> str:
    """Return the non-empty string at ``key`` or raise ``auth.missing_field`` / ``auth.invalid_field``."""
    value = get_str(body, key, required=True, max_len=max_len)
    if value is None:  # pragma: no cover - get_str(required=True) never returns None
        raise _missing(key)
    return value


def get_str_list(body: Mapping[str, Any], key: str, *, max_items: int = MAX_LIST) -> list[str]:
    """Return the list of strings at ``key`` (empty when absent)."""
    value = body.get(key)
    if value is None:
        return []
    if (
        not isinstance(value, list)
        or len(value) > max_items
        or not all(isinstance(v, str) and 0 < len(v) <= MAX_TEXT for v in value)
    ):
        raise _invalid(key, f"a list of at most {max_items} non-empty strings", value)
    return list(value)


def get_object(body: Mapping[str, Any], key: str) -> dict[str, Any]:
    """Return the JSON object at ``key`` (empty when absent)."""
    value = body.get(key)
    if value is None:
        return {}
    return require_object(value, key)


def get_bool(body: Mapping[str, Any], key: str, default: bool = False) -> bool:
    """Return the boolean at ``key`` (``default`` when absent)."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _invalid(key, "a boolean", value)
    return value


def require_uuid(value: str, key: str) -> str:
    """Return ``value`` in canonical lower-case UUID form, or raise naming ``key``."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise MalformedError(f"invalid {key}: expected a UUID", code="auth.invalid_field") from None


def parse_paging(query: Mapping[str, str], *, default_limit: int = 10) -> tuple[int, int]:
    """Return ``(offset, limit)`` from query parameters; limit 1..100, offset >= 0."""
    try:
        offset = int(query.get("offset", "0"))
        limit = int(query.get("limit", str(default_limit)))
    except ValueError:
        raise MalformedError(
            "invalid offset or limit: expected integers", code="auth.invalid_field"
        ) from None
    if offset < 0 or not 1 <= limit <= MAX_LIMIT:
        raise MalformedError(
            f"invalid paging: offset must be >= 0 and limit within 1..{MAX_LIMIT}", code="auth.invalid_field"
        )
    return offset, limit


def parse_duration(text: str, key: str = "duration") -> timedelta:
    """Parse a Go-style duration ("720h", "1h30m", "90s"; our extension: "30d", "2w") into a timedelta."""
    if not isinstance(text, str) or not text or len(text) > 64:
        raise MalformedError(
            f"invalid {key}: expected a duration such as '720h'", code="auth.invalid_duration"
        )
    position = 0
    seconds = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise MalformedError(
            f"invalid {key} {text!r}: expected a duration such as '720h' or '30d'",
            code="auth.invalid_duration",
        )
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # beyond ~2.7 million years: no caller's limit can accept it
        raise MalformedError(
            f"invalid {key} {text!r}: the duration is too long", code="auth.invalid_duration"
        ) from None
