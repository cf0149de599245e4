"""Benchmark helper: our proxy in its own process, with the auth service in-process on a temporary SQLite.

Run by ``bench/proxy.py``. It opens the auth service (fast argon2, ``synchronous=off``) in a temporary
directory, creates a domain and a personal access token as the bootstrap admin (what ``cube-stack up``
does on first run), and serves :func:`create_proxy_app` with an :class:`InProcessAuthClient` in front of
the upstream given by ``--upstream``, over plain HTTP or (``--tls``) HTTPS with a key made at start.
Logging is set up as ``cube-stack up`` does (WARNING), so the audit lines are built but not written.
Allow decisions are cached for an hour, so the measured requests see a warm cache, and the rate limit is
set too high to bite (it still runs per request). With ``--redis URL`` the limits are shared through
that Redis (``CUBE_PROXY_REDIS_URL``), leased ``--redis-lease`` tokens per round trip; the bucket is so
large that every lease is full, the steady state of a busy user. When listening it writes
``{"url", "token", "domain", "pid"}`` to ``--ready-file``.

With ``--profile PATH``, SIGUSR1 starts cProfile and SIGTERM writes the stats to PATH before exiting,
so a profile covers only the requests sent between the two.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import secrets
import signal
import tempfile
import time
from pathlib import Path

from cube_stack.auth.requests import parse_new_domain, parse_new_pat
from cube_stack.auth.service import AuthService
from cube_stack.auth.settings import AuthSettings
from cube_stack.proxy.app import create_proxy_app
from cube_stack.proxy.authclient import InProcessAuthClient
from cube_stack.proxy.server import ProxyServer
from cube_stack.proxy.settings import ProxySettings

ADMIN = "admin"


async def bootstrap(service: AuthService, password: str) -> tuple[str, str]:
    """Create a domain and a PAT scoped to its LLM entities; return (domain id, token)."""
    pair = await service.issue_tokens(ADMIN, password)
    admin = await service.authenticate(pair.access_token)
    domain = await service.create_domain(admin, parse_new_domain({"name": "Bench", "route": "bench"}))
    scopes = [{"domain_id": domain.id, "entity_type": "llm", "entity_id": "*", "operation": "*"}]
    new_pat = parse_new_pat(
        {"name": "bench", "description": "bench/proxy.py", "duration": "1d", "scopes": scopes}
    )
    _, secret = await service.create_pat(admin, new_pat)
    return domain.id, secret


def write_ready(path: str, info: dict[str, object]) -> None:
    """Write ``info`` as JSON to ``path`` atomically (the parent polls for the file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(info, handle)
    os.replace(tmp, path)


async def serve(args: argparse.Namespace, profiler: cProfile.Profile | None) -> None:
    """Start auth and proxy, report where, and serve until SIGTERM or SIGINT."""
    with tempfile.TemporaryDirectory(prefix="cube-bench-auth-") as data:
        password = secrets.token_urlsafe(16)
        auth_settings = AuthSettings(
            data_dir=Path(data),
            admin_username=ADMIN,
            admin_email="admin@localhost",
            admin_password=password,
            argon2_time_cost=1,
            argon2_memory_kib=8,
            sqlite_synchronous="off",
        )
        service = await AuthService.open(auth_settings)
        try:
            domain, token = await bootstrap(service, password)
            settings = ProxySettings(
                host="127.0.0.1",
                port=0,
                tls=args.tls,
                auth_url="http://127.0.0.1:9",  # unused: the auth client is in-process
                ollama_url=args.upstream,
                openai_url=args.upstream,
                decision_ttl=3600.0,  # keep the cache warm for the whole run
                rate_limit_per_minute=1e12,  # the limiter runs, but never refuses
                rate_limit_burst=10**9,
                redis_url=args.redis or "",
                redis_address_key=secrets.token_hex(32) if args.redis else None,
                redis_lease=args.redis_lease,
            )
            auth = InProcessAuthClient(service)
            proxy = ProxyServer(create_proxy_app(settings, auth=auth), settings)
            sock = proxy.bind()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, proxy.stop)
            if profiler is not None:
                loop.add_signal_handler(signal.SIGUSR1, profiler.enable)
            write_ready(
                args.ready_file, {"url": proxy.url, "token": token, "domain": domain, "pid": os.getpid()}
            )
            try:
                await proxy.serve(sockets=[sock])
            finally:
                if profiler is not None:
                    profiler.disable()
                sock.close()
                await auth.aclose()
        finally:
            await service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the fake runtime's base URL")
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--redis", help="share the rate limits through this Redis URL")
    parser.add_argument("--redis-lease", type=int, default=8, help="tokens leased per Redis round trip")
    parser.add_argument("--profile", help="write cProfile stats here (profiling starts on SIGUSR1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # CPU time, not wall time: on a shared machine, time spent descheduled is not the proxy's cost.
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    asyncio.run(serve(args, profiler))
    if profiler is not None:
        profiler.dump_stats(args.profile)


if __name__ == "__main__":
    main()
