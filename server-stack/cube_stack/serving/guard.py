"""Counting connections against the caps, and saying what was refused without flooding the log.

No sockets here: :class:`ConnectionGuard` decides and counts, the listener (:mod:`.listener`) does the
I/O. Every connection holds one :class:`ConnectionSlot` from accept to close, whoever ends it (the
listener when a PROXY header or a TLS handshake fails, the HTTP protocol on ``connection_lost``);
releasing is idempotent, so the counts cannot drift when both see the end.

Logging is bounded by :class:`BoundedLog`: one line per event kind per interval, carrying the count
since the previous line. An attacker controls how often events happen, never how often we write.

Memory: every connection admitted to TLS costs about 256 KiB of buffers (asyncio's SSL read buffer),
which glibc keeps in its heap after they are freed (the finding saw RSS stay at 6.2 GB after the
connections closed). Once :data:`TRIM_AFTER_ADMITTED` connections were admitted since the last time and
the open count falls to a quarter of its peak (an attack ends, a burst drains),
:func:`return_free_memory` asks glibc to hand the free pages back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from cube_stack.serving.limits import ConnectionLimits, address_key

log = logging.getLogger("cube_stack.serving")

# Why a connection was closed before it carried a request (the keys of ServingStats.closed).
REFUSED_MAX_CONNECTIONS = "max_connections"  # reset at accept: the server holds its cap
REFUSED_PER_ADDRESS = "max_connections_per_address"  # reset at accept: that address holds its cap
PROXY_HEADER = "proxy_header"  # a balancer's PROXY v2 header was malformed, refused or too slow
HANDSHAKE_TIMEOUT = "handshake_timeout"  # the TLS handshake did not finish in time
HANDSHAKE_FAILED = "handshake_failed"  # the TLS handshake failed (not TLS, bad version, reset)
HEADER_TIMEOUT = "header_timeout"  # a request's headers did not arrive in time (408, then closed)
HEADER_TOO_LARGE = "header_too_large"  # request line and headers over max_header_bytes (431, closed)
BODY_TIMEOUT = "body_timeout"  # a request's body did not arrive in time (closed)
CLOSE_REASONS = (
    REFUSED_MAX_CONNECTIONS,
    REFUSED_PER_ADDRESS,
    PROXY_HEADER,
    HANDSHAKE_TIMEOUT,
    HANDSHAKE_FAILED,
    HEADER_TIMEOUT,
    HEADER_TOO_LARGE,
    BODY_TIMEOUT,
)
TRIM_AFTER_ADMITTED = 256  # connections admitted since the last malloc_trim before another is worth it
LOG_INTERVAL = 5.0  # seconds between two lines about the same kind of event


@dataclass
class ServingStats:
    """What one server has seen: open connections now, closes by reason, accept errors."""

    open: int = 0  # connections holding a slot (TLS handshakes and PROXY headers included)
    closed: Counter[str] = field(default_factory=Counter)  # closed before serving, by CLOSE_REASONS
    accept_errors: int = 0  # accept() failures (EMFILE, ENFILE, ENOBUFS, ENOMEM, ...)
    memory_trims: int = 0  # times freed heap was handed back to the OS


class BoundedLog:
    """At most one warning per event kind per ``interval``; each line counts what it stands for."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._pending: dict[str, tuple[int, str]] = {}  # kind -> (count not yet logged, latest detail)
        self._last: dict[str, float] = {}  # kind -> when its last line was written

    def note(self, kind: str, detail: str = "") -> None:
        """Count one event of ``kind`` (a bounded set: never put an address in it); log if due."""
        count, _ = self._pending.get(kind, (0, ""))
        self._pending[kind] = (count + 1, detail)
        last = self._last.get(kind)
        if last is None or self._clock() - last >= self._interval:
            self._write(kind)

    def flush(self, *, force: bool = False) -> None:
        """Write the counts whose interval has passed (all of them with ``force``)."""
        now = self._clock()
        for kind in list(self._pending):
            if force or now - self._last.get(kind, now - self._interval) >= self._interval:
                self._write(kind)

    def _write(self, kind: str) -> None:
        count, detail = self._pending.pop(kind)
        previous = self._last.get(kind)
        self._last[kind] = now = self._clock()
        span = f"{now - previous:.1f}" if previous is not None else "0"
        self._logger.warning(
            "%s count=%d in_s=%s%s", kind, count, span, f" {detail}" if detail else "", extra={"event": kind}
        )


class ConnectionSlot:
    """One accepted connection's place in the counts, held until it closes."""

    __slots__ = ("_guard", "client", "key", "released")

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self.key: str | None = None  # the per-address key, once claimed
        self.client: tuple[str, int] | None = None  # the client a PROXY header named; None: the peer
        self.released = False

    def release(self) -> None:
        """Give the slot back (a second call does nothing)."""
        if not self.released:
            self.released = True
            self._guard._release(self)

    def note_closed(self, reason: str, peer: str) -> None:
        """Count this connection as closed for ``reason`` (one of :data:`CLOSE_REASONS`)."""
        self._guard.note_closed(reason, peer)

    def note_warning(self, message: str) -> None:
        """Count a warning of the HTTP protocol (a malformed request) in the bounded log."""
        self._guard.log.note(f"serving.http_warning message={message!r}")


class ConnectionGuard:
    """The global and per-address connection counts of one server, checked at accept."""

    def __init__(
        self,
        limits: ConnectionLimits,
        stats: ServingStats,
        *,
        log: BoundedLog,
        trim: Callable[[], bool] | None = None,
    ) -> None:
        self.limits = limits
        self.stats = stats
        self.log = log
        self._trim = return_free_memory if trim is None else trim
        self._per_address: dict[str, int] = {}
        self._peak = 0  # most connections open at once since the last trim
        self._admitted = 0  # connections admitted (past the caps) since the last trim

    def reserve(self, peer: str) -> ConnectionSlot | None:
        """Return a slot under the global cap, or None (counted and logged) when it is full."""
        if self.stats.open >= self.limits.max_connections:
            self.note_closed(REFUSED_MAX_CONNECTIONS, peer)
            return None
        self.stats.open += 1
        self._peak = max(self._peak, self.stats.open)
        return ConnectionSlot(self)

    def claim_address(self, slot: ConnectionSlot, host: str) -> bool:
        """Count ``slot`` against ``host``'s cap; False (counted and logged) when that address is full."""
        key = address_key(host)
        held = self._per_address.get(key, 0)
        if held >= self.limits.max_connections_per_address:
            self.note_closed(REFUSED_PER_ADDRESS, host)
            return False
        self._per_address[key] = held + 1
        slot.key = key
        self._admitted += 1
        return True

    def held_by(self, host: str) -> int:
        """Return how many connections ``host``'s key holds now."""
        return self._per_address.get(address_key(host), 0)

    def note_closed(self, reason: str, peer: str) -> None:
        """Count a connection closed before serving, and log it at a bounded rate."""
        self.stats.closed[reason] += 1
        self.log.note(f"serving.closed reason={reason}", f"last_peer={peer}")

    def note_accept_error(self, error: OSError, backoff: float) -> None:
        """Count a failed accept() and log it at a bounded rate."""
        self.stats.accept_errors += 1
        name = errno_name(error)
        self.log.note(f"serving.accept_error errno={name}", f"backoff_s={backoff:g}")

    def _release(self, slot: ConnectionSlot) -> None:
        self.stats.open -= 1
        if slot.key is not None:
            left = self._per_address[slot.key] - 1
            if left:
                self._per_address[slot.key] = left
            else:
                del self._per_address[slot.key]
        if self._admitted >= TRIM_AFTER_ADMITTED and self.stats.open <= self._peak // 4:
            self._peak = self.stats.open
            self._admitted = 0
            if self._trim():
                self.stats.memory_trims += 1


def errno_name(error: OSError) -> str:
    """Return ``EMFILE`` for an OSError with that errno, else the exception's class name."""
    return errno.errorcode.get(error.errno or 0, type(error).__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        trim = libc.malloc_trim  # glibc only; musl and macOS have none
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def return_free_memory() -> bool:
    """Hand the heap's free pages back to the OS (glibc ``malloc_trim(0)``); False where there is none."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
