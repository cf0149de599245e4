"""Serving an ASGI app with uvicorn behind a connection guard: the proxy's and the auth service's front door.

Slow and spoofing clients are stopped here, before any request reaches an app:

* :class:`ConnectionLimits` -- TLS-handshake and header deadlines, a global and a per-address connection
  cap, the forwarders whose ``X-Forwarded-For`` is believed (none by default) and the balancers that must
  open each connection with a PROXY v2 header (none by default);
* :class:`GuardedServer` -- uvicorn's server with our accept loop (caps, PROXY header, handshake
  deadline, EMFILE back-off with bounded logging) and our HTTP protocol (header deadline);
* :class:`ServingStats` -- what was refused and why, for ``/metrics``;
* :mod:`.proxy_protocol` -- the PROXY v2 wire format, both directions.
"""

from cube_stack.serving.errors import ConnectionLimitsError, ProxyHeaderError, ServingError
from cube_stack.serving.guard import CLOSE_REASONS, ServingStats, return_free_memory
from cube_stack.serving.limits import ConnectionLimits, address_key
from cube_stack.serving.proxy_protocol import ProxyHeader, build_header, parse_header, parse_prefix
from cube_stack.serving.server import GuardedServer, guarded_config

__all__ = [
    "CLOSE_REASONS",
    "ConnectionLimits",
    "ConnectionLimitsError",
    "GuardedServer",
    "ProxyHeader",
    "ProxyHeaderError",
    "ServingError",
    "ServingStats",
    "address_key",
    "build_header",
    "guarded_config",
    "parse_header",
    "parse_prefix",
    "return_free_memory",
]
