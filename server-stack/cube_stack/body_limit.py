"""A request-body cap as pure-ASGI middleware, shared by the auth service and the proxy.

A declared oversize body (Content-Length) is refused before a byte of it is read; a body without a
declared length (chunked) is counted as it streams, and the first message past the cap raises, which the
app's handlers turn into 413. Each service subclasses :class:`BodyLimitMiddleware` to name its own error
types and to answer in its own error format.
"""

from __future__ import annotations

import abc

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware(abc.ABC):
    """Refuse request bodies over ``max_bytes``: by Content-Length up front, else while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    @abc.abstractmethod
    def too_large(self) -> Exception:
        """Return the service's 413 error."""

    @abc.abstractmethod
    def bad_length(self) -> Exception:
        """Return the service's 400 error for a Content-Length that is not a number."""

    @abc.abstractmethod
    async def refuse(self, error: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``error`` before the app runs."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer at once for a declared oversize body, or pass on a counting ``receive``."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self.refuse(self.bad_length(), scope, receive, send)
                    return
                if declared > self.max_bytes:
                    await self.refuse(self.too_large(), scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self.too_large()  # the app's handlers render it as 413
            return message

        await self.app(scope, limited_receive, send)
