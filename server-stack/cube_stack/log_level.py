"""The services' log level from ``CUBE_LOG_LEVEL``: what a CVM's deployment settings (HOST_DATA) fix.

``debug`` is the level at which a service may log request details, so it is a deployment setting a
client can see and refuse (``cube_wire.host_data``), not something a host changes quietly. The
proxy and the runtime started on their own (``python -m cube_stack.proxy`` / ``cube_stack.runtime``)
both read it; unset means ``info``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from cube_wire.errors import CubeError
from cube_wire.host_data import LOG_LEVELS

VARIABLE = "CUBE_LOG_LEVEL"


def configure_logging(environ: Mapping[str, str]) -> None:
    """Configure the root logger from ``CUBE_LOG_LEVEL``; raise CubeError naming it when invalid."""
    value = environ.get(VARIABLE, "").strip().lower() or "info"
    if value not in LOG_LEVELS:
        raise CubeError(
            f"{VARIABLE}: found {value!r}, wanted one of {list(LOG_LEVELS)}", code="settings.invalid"
        )
    logging.basicConfig(level=getattr(logging, value.upper()), format="%(message)s")
