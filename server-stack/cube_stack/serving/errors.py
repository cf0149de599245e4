"""The serving layer's errors: bad connection limits at start, and PROXY headers that fail to parse.

::

    CubeError (cube_wire.errors)
    └── ServingError                 serving.error
        ├── ConnectionLimitsError    serving.limits_invalid   (raised at start; ``field`` names the limit)
        └── ProxyHeaderError         serving.proxy_header_*   (a balancer's PROXY v2 header; the connection
                                                               is closed, never answered)

Codes are stable and tests assert them, never the message text.
"""

from __future__ import annotations

from cube_wire.errors import CubeError


class ServingError(CubeError):
    """An expected failure of the serving layer."""

    code = "serving.error"


class ConnectionLimitsError(ServingError):
    """A connection limit has the wrong value; ``field`` names it."""

    code = "serving.limits_invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"connection limit '{field}': {message}")
        self.field = field
        self.detail = message  # without the prefix, for a caller that names the field its own way


class ProxyHeaderError(ServingError):
    """A PROXY protocol v2 header is missing, malformed or of a kind we do not accept.

    Codes: ``serving.proxy_header_signature`` (not a v2 header: no signature), ``..._version``,
    ``..._command``, ``..._family``, ``..._length`` (too long, or too short for its addresses),
    ``..._truncated`` (the peer closed before the header ended).
    """

    code = "serving.proxy_header_invalid"
