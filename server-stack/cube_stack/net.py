"""Listening sockets for the stack's uvicorn servers.

asyncio turns Nagle's algorithm off (TCP_NODELAY) only for sockets whose ``proto`` is IPPROTO_TCP;
a socket made with ``socket.socket(AF_INET, SOCK_STREAM)`` has ``proto`` 0, so every connection it
accepts keeps Nagle on. uvicorn writes a response's headers and body separately, and with the
client's delayed ACK each request then stalls for about 40 ms on loopback. Every socket we bind
ourselves goes through :func:`bind_tcp`, which names the protocol and sets TCP_NODELAY explicitly.

The listen backlog is 2,048 (the kernel caps it at ``net.core.somaxconn``): under a burst of connects --
a slowloris opening thousands -- a full backlog drops SYNs, and a normal client whose SYN is dropped
waits a whole second for its retry. The serving layer accepts (and resets) fast enough to keep it short.
"""

from __future__ import annotations

import socket

BACKLOG = 2048  # connections the kernel queues for accept()


def bind_tcp(host: str, port: int, *, backlog: int = BACKLOG) -> socket.socket:
    """Return a listening TCP socket on ``host:port`` (port 0 picks a free one), Nagle off."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
