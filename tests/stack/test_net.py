"""Sockets we bind for uvicorn must give asyncio connections with Nagle off (else ~40 ms stalls)."""

from __future__ import annotations

import asyncio
import socket

from cube_stack.net import bind_tcp


async def test_accepted_connections_have_nodelay():
    listener = bind_tcp("127.0.0.1", 0)
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(on_connect, sock=listener)
    port = listener.getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await accepted != 0
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
