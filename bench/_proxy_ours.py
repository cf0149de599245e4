"""Benchmark helper: our proxy in its own process, asking the auth service as it is deployed.

Run by ``bench/proxy.py``. By default (``--auth grpc``, the deployed path) it starts ``cube-stack auth
serve`` as a process of its own on a temporary SQLite (fast argon2, ``synchronous=off``), makes a domain
and a personal access token with the admin commands, and serves :func:`create_proxy_app` with the
deployed auth client (:func:`cube_stack.proxy.standalone.build_auth`: ``auth.v1`` over gRPC, the JWKS
over HTTP). ``--auth inprocess`` keeps the service in the proxy's process (``cube-stack up``'s shape).
The proxy is in front of the upstream given by ``--upstream``, over plain HTTP or (``--tls``) HTTPS
with a key made at start.
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
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cube_stack.auth.requests import parse_new_domain, parse_new_pat
from cube_stack.auth.service import AuthService
from cube_stack.auth.settings import AuthSettings
from cube_stack.proxy.app import create_proxy_app
from cube_stack.proxy.authclient import InProcessAuthClient
from cube_stack.proxy.server import ProxyServer
from cube_stack.proxy.settings import ProxySettings
from cube_stack.proxy.standalone import build_auth

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


_LISTENING = re.compile(r"auth\.listening http=(http://\S+) grpc=(\S+)")
_CHEAP_AUTH = {
    "CUBE_AUTH_ARGON2_TIME_COST": "1",
    "CUBE_AUTH_ARGON2_MEMORY_KIB": "8",
    "CUBE_AUTH_SQLITE_SYNCHRONOUS": "off",
}


def _cube_stack(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cube_stack.cli", *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"cube-stack {' '.join(args[:2])}: {done.stderr.strip()}")
    return done.stdout


def start_auth_service(data: Path) -> tuple[subprocess.Popen[str], str, str, str, str]:
    """Start `cube-stack auth serve`; return (process, HTTP URL, gRPC target, domain id, PAT)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUBE_AUTH_")} | _CHEAP_AUTH
    env |= {"CUBE_AUTH_ADMIN_USERNAME": ADMIN, "CUBE_AUTH_ADMIN_EMAIL": "admin@localhost"}
    env |= {"CUBE_AUTH_ADMIN_PASSWORD": secrets.token_urlsafe(16)}
    key = data / "keys" / "signing.pem"
    key.parent.mkdir(mode=0o700)
    _cube_stack("auth", "keygen", str(key), env=env)
    db = ["--database-url", str(data / "auth.db")]
    argv = [sys.executable, "-m", "cube_stack.cli", "auth", "serve", *db, "--signing-key", str(key)]
    argv += ["--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0"]
    process = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        if match := _LISTENING.search(line):
            break
    else:
        raise SystemExit(f"cube-stack auth serve exited with {process.wait()} before listening")
    # Keep reading its log, so that a full pipe never blocks the service.
    threading.Thread(target=lambda: [None for _ in process.stderr or ()], daemon=True).start()
    domain = json.loads(_cube_stack("domain", "create", "Bench", "--route", "bench", *db, env=env))["id"]
    pat = json.loads(_cube_stack("token", "create", "--domain", domain, "--duration", "1d", *db, env=env))
    return process, match.group(1), match.group(2), domain, pat["token"]


def write_ready(path: str, info: dict[str, object]) -> None:
    """Write ``info`` as JSON to ``path`` atomically (the parent polls for the file)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(info, handle)
    os.replace(tmp, path)


async def serve(args: argparse.Namespace, profiler: cProfile.Profile | None) -> None:
    """Start auth and proxy, report where, and serve until SIGTERM or SIGINT."""
    with tempfile.TemporaryDirectory(prefix="cube-bench-auth-") as data:
        service: AuthService | None = None
        auth_process: subprocess.Popen[str] | None = None
        try:
            if args.auth == "grpc":
                auth_process, auth_url, grpc, domain, token = start_auth_service(Path(data))
            else:
                password = secrets.token_urlsafe(16)
                service = await AuthService.open(
                    AuthSettings(
                        data_dir=Path(data),
                        admin_username=ADMIN,
                        admin_email="admin@localhost",
                        admin_password=password,
                        argon2_time_cost=1,
                        argon2_memory_kib=8,
                        sqlite_synchronous="off",
                    )
                )
                domain, token = await bootstrap(service, password)
                auth_url, grpc = "http://127.0.0.1:9", "127.0.0.1:9"  # unused: the service is in-process
            settings = ProxySettings(
                host="127.0.0.1",
                port=0,
                tls=args.tls,
                auth_url=auth_url,
                auth_grpc=grpc,
                ollama_url=args.upstream,
                openai_url=args.upstream,
                decision_ttl=3600.0,  # keep the cache warm for the whole run
                rate_limit_per_minute=1e12,  # the limiter runs, but never refuses
                rate_limit_burst=10**9,
                # The load generator is one client address with up to 64 connections plus the
                # sequential phase's; the default cap of 64 per address would reset one of them.
                max_connections_per_address=256,
                redis_url=args.redis or "",
                redis_address_key=secrets.token_hex(32) if args.redis else None,
                redis_lease=args.redis_lease,
            )
            auth = InProcessAuthClient(service) if service is not None else build_auth(settings)
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
            if service is not None:
                await service.close()
            if auth_process is not None:
                auth_process.terminate()
                auth_process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the fake runtime's base URL")
    parser.add_argument("--ready-file", required=True)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument(
        "--auth", choices=["grpc", "inprocess"], default="grpc", help="deployed gRPC path, or in-process"
    )
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
