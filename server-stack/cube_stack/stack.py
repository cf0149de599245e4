"""The embedded default: auth on SQLite, a model runtime, the simulated attestation agent and the proxy.

`cube-stack up` is this module plus argument parsing. Everything runs in one process and one event
loop, bound to loopback:

* the SuperMQ-compatible auth service (SQLite under the data directory) with its HTTP API, so the
  SuperMQ user/token/PAT endpoints work as they would in production;
* a runtime: Ollama at 127.0.0.1:11434 when it answers, otherwise the built-in llama.cpp runtime
  with the given GGUF models, or the generated RANDOM-WEIGHTS demo model when none is given; it
  listens on ``DATA/runtime/runtime.sock`` (0600, directory 0700), on no TCP port, so only the proxy
  reaches it;
* the proxy over TLS, with a key made at start, and the SIMULATED attestation agent bound to it
  (there is no SEV-SNP hardware on a laptop; the client accepts the simulated root only because
  the policy written here names it, and says SIMULATED everywhere);
* on first run a user, a domain and a personal access token, kept in ``state.json`` (0600).

It writes ``client.json`` (the cube-lsp settings contract), ``policy.json`` (the attestation policy
naming the simulated root and measurement) and ``proxy-cert.pem`` (this start's certificate, so TLS
can proceed; trust still rests on attestation pinning the key).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from cube_stack.agent.tls import new_tls_identity
from cube_stack.auth.app import guarded_auth_server
from cube_stack.auth.requests import parse_new_domain, parse_new_pat
from cube_stack.auth.service import AuthService
from cube_stack.auth.settings import AuthSettings
from cube_stack.net import bind_tcp
from cube_stack.private_files import secure_tree, write_private
from cube_stack.proxy.app import create_proxy_app
from cube_stack.proxy.authclient import InProcessAuthClient
from cube_stack.proxy.server import ProxyServer
from cube_stack.proxy.settings import ProxySettings
from cube_stack.proxy.standalone import build_agent, write_simulated_policy
from cube_stack.serving import GuardedServer

if TYPE_CHECKING:
    from cube_stack.runtime import OllamaRuntime, Runtime

log = logging.getLogger("cube_stack")

ADMIN_USERNAME = "admin"
ADMIN_EMAIL = "admin@localhost"
DOMAIN_ROUTE = "cube"
PAT_LIFETIME = "365d"
OLLAMA_URL = "http://127.0.0.1:11434"


def default_data_dir() -> Path:
    """Return the per-user data directory of `cube-stack up`."""
    return platformdirs.user_data_path("cube-stack")


@dataclass(frozen=True)
class StackOptions:
    """What `cube-stack up` starts; every field has a default."""

    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"  # the proxy's listen address
    port: int = 8900  # the proxy's port (Cube's default); 0 picks a free one
    auth_port: int = 8189  # the auth service's HTTP API (SuperMQ's default port); 0 picks a free one
    models: Sequence[Path] = ()  # GGUF files for the built-in runtime; empty: the RANDOM-WEIGHTS demo
    embed_model: str | None = None  # sentence-transformers directory; unset: the bundled all-MiniLM-L6-v2
    ollama_url: str | None = OLLAMA_URL  # use Ollama when it answers here; None: never
    argon2_fast: bool = False  # cheap password hashing (tests only)
    access_token_ttl: timedelta | None = None  # unset: the auth service's default (SuperMQ's 1 h)


@dataclass
class StackState:
    """What the first run created and later runs reuse (kept in ``state.json``, mode 0600)."""

    admin_password: str
    domain_id: str = ""
    token: str = ""

    @classmethod
    def load_or_create(cls, path: Path) -> StackState:
        """Read the state, or make a new admin password on first run."""
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**{k: data[k] for k in ("admin_password", "domain_id", "token") if k in data})
        state = cls(admin_password=secrets.token_urlsafe(24))
        state.save(path)
        return state

    def save(self, path: Path) -> None:
        """Write the state readable by the owner only."""
        write_private(path, json.dumps(self.__dict__, indent=2) + "\n")


@dataclass
class RunningStack:
    """The started parts, with what a client needs to reach them."""

    endpoint: str
    auth_url: str
    domain_id: str
    token: str
    runtime: str  # "ollama" or "builtin"
    runtime_url: str  # where the proxy reaches it: unix:/DATA/runtime/runtime.sock for the built-in one
    completion_model: str
    embedding_model: str | None
    client_settings: dict[str, Any]
    paths: dict[str, Path]


class EmbeddedStack:
    """Starts and stops the embedded default; use ``async with EmbeddedStack(options) as running``."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self._exit = contextlib.AsyncExitStack()
        self.service: AuthService | None = None
        self.runtime: Runtime | None = None
        self.proxy: ProxyServer | None = None

    async def __aenter__(self) -> RunningStack:
        try:
            return await self._start()
        except BaseException:
            await self._exit.aclose()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        await self._exit.aclose()

    async def _start(self) -> RunningStack:
        opts = self.options
        data = opts.data_dir
        # Repair what an earlier version, a deployment tool or a volume mount left readable (with a
        # warning naming each path), before anything secret is read or written.
        secure_tree(data)
        state_path = data / "state.json"
        state = StackState.load_or_create(state_path)

        service = await AuthService.open(self._auth_settings(state))
        self._exit.push_async_callback(service.close)
        self.service = service
        auth_url = await self._serve_auth(service)
        if not state.domain_id or not state.token:
            await _bootstrap(service, state)
            state.save(state_path)

        runtime, models = await self._start_runtime()
        completion_model, embedding_model = models

        settings = ProxySettings(
            host=opts.host,
            port=opts.port,
            tls=True,
            auth_url=auth_url,
            ollama_url=runtime.base_url,
            attestation="simulated",
            attestation_state_dir=str(data / "agent"),
        )
        identity = new_tls_identity(settings.tls_hostnames, days=settings.tls_cert_days)
        agent = await build_agent(settings, identity)  # as a CVM's proxy does, self-test included
        auth_client = InProcessAuthClient(service)
        self._exit.push_async_callback(auth_client.aclose)
        app = create_proxy_app(settings, auth=auth_client, agent=agent, identity=identity)
        proxy = ProxyServer(app, settings)
        sock = proxy.bind()
        serving = asyncio.create_task(proxy.serve(sockets=[sock]))
        self._exit.push_async_callback(_stop_proxy, proxy, serving, sock)
        await _wait_started(lambda: proxy.started, serving)
        self.proxy = proxy

        paths = {
            "client": data / "client.json",
            "policy": data / "policy.json",
            "certificate": data / "proxy-cert.pem",
            "state": state_path,
        }
        write_simulated_policy(agent, paths["policy"])
        write_private(paths["certificate"], identity.cert_pem)
        client = {
            "endpoint": proxy.url,
            "domain": state.domain_id,
            "token": state.token,
            "api": "ollama",
            # The completion model answers chat too (the demo model and Ollama's coder models have chat
            # templates); an operator points `models.chat` at an instruct model for better answers.
            "models": {
                "completion": completion_model,
                "chat": completion_model,
                "embedding": embedding_model,
            },
            "attestation": {"mode": "simulated", "policy": str(paths["policy"])},
            "tls": {"caBundle": str(paths["certificate"])},
        }
        write_private(paths["client"], json.dumps(client, indent=2) + "\n")
        # Libraries (SQLite's -wal/-shm, the model writer) create files under the umask; everything in
        # the data directory is the owner's alone.
        secure_tree(data, quiet=True)
        return RunningStack(
            endpoint=proxy.url,
            auth_url=auth_url,
            domain_id=state.domain_id,
            token=state.token,
            runtime=runtime.kind,
            runtime_url=runtime.base_url,
            completion_model=completion_model,
            embedding_model=embedding_model,
            client_settings=client,
            paths=paths,
        )

    def _auth_settings(self, state: StackState) -> AuthSettings:
        fast = {"argon2_time_cost": 1, "argon2_memory_kib": 8, "sqlite_synchronous": "off"}
        ttl = {"access_token_ttl": self.options.access_token_ttl} if self.options.access_token_ttl else {}
        return AuthSettings(
            data_dir=self.options.data_dir / "auth",
            admin_username=ADMIN_USERNAME,
            admin_email=ADMIN_EMAIL,
            admin_password=state.admin_password,
            **(fast if self.options.argon2_fast else {}),  # type: ignore[arg-type]
            **ttl,  # type: ignore[arg-type]
        )

    async def _serve_auth(self, service: AuthService) -> str:
        sock = bind_tcp(self.options.host, self.options.auth_port)
        # The auth API behind the same guard as the proxy: handshake/header deadlines, connection caps,
        # no X-Forwarded-For believed (every client of the embedded stack is on loopback).
        server = guarded_auth_server(service)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        self._exit.push_async_callback(_stop_uvicorn, server, serving, sock)
        await _wait_started(lambda: server.started, serving)
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def _start_runtime(self) -> tuple[Runtime, tuple[str, str | None]]:
        # Imported here: the runtimes need the `runtime` extra (llama.cpp, torch), which a server-only
        # install (`cube-stack auth serve` outside the CVM) does not have.
        from cube_stack.runtime import (
            DEMO_MODEL_NAME,
            MINILM_NAME,
            BuiltinRuntime,
            BuiltinSettings,
            OllamaRuntime,
            default_socket_path,
            embedded_default_settings,
        )

        opts = self.options
        if opts.ollama_url and not opts.models:
            ollama = OllamaRuntime(opts.ollama_url)
            if await ollama.probe():
                names = await _ollama_models(ollama)
                self.runtime = ollama
                log.info("using Ollama at %s", opts.ollama_url)
                completion = next(
                    (n for n in names if "coder" in n or "code" in n), names[0] if names else ""
                )
                embedding = next((n for n in names if "embed" in n or "minilm" in n), None)
                return ollama, (completion, embedding)
        if opts.models:
            models = {path.stem: path for path in opts.models}
            embedders = {Path(opts.embed_model).name: Path(opts.embed_model)} if opts.embed_model else {}
            settings = BuiltinSettings(
                models=models,
                embedders=embedders,
                minilm=not opts.embed_model,
                socket_path=default_socket_path(opts.data_dir),  # no TCP port: only the proxy reaches it
            )
            completion = next(iter(models))
        else:
            settings = embedded_default_settings(opts.data_dir)
            completion = DEMO_MODEL_NAME
        runtime = BuiltinRuntime(settings)
        await runtime.start()
        self._exit.push_async_callback(runtime.stop)
        self.runtime = runtime
        embedding = Path(opts.embed_model).name if opts.embed_model else MINILM_NAME
        return runtime, (completion, embedding)


async def _bootstrap(service: AuthService, state: StackState) -> None:
    """Create the first domain and a PAT for it, as the bootstrap admin."""
    pair = await service.issue_tokens(ADMIN_USERNAME, state.admin_password)
    admin = await service.authenticate(pair.access_token)
    domain = await service.create_domain(admin, parse_new_domain({"name": "Cube", "route": DOMAIN_ROUTE}))
    scopes = [{"domain_id": domain.id, "entity_type": "llm", "entity_id": "*", "operation": "*"}]
    new_pat = parse_new_pat(
        {
            "name": "cube-stack",
            "description": "made by cube-stack up",
            "duration": PAT_LIFETIME,
            "scopes": scopes,
        }
    )
    _, secret = await service.create_pat(admin, new_pat)
    state.domain_id, state.token = domain.id, secret


async def _ollama_models(ollama: OllamaRuntime) -> list[str]:
    import httpx

    async with httpx.AsyncClient(timeout=2, trust_env=False) as client:
        response = await client.get(f"{ollama.base_url}/api/tags")
    return [model["name"] for model in response.json().get("models", []) if isinstance(model, dict)]


async def _wait_started(started: Any, serving: asyncio.Task[None]) -> None:
    """Wait until a uvicorn server says it started, or fail if it exited first."""
    while not started():
        if serving.done():
            serving.result()  # raises the server's start-up error
            raise RuntimeError("server exited during start-up")
        await asyncio.sleep(0.01)  # uvicorn offers no start-up event; polling its flag is the API


async def _stop_uvicorn(server: GuardedServer, serving: asyncio.Task[None], sock: socket.socket) -> None:
    server.stop()
    with contextlib.suppress(Exception):
        await serving
    sock.close()


async def _stop_proxy(proxy: ProxyServer, serving: asyncio.Task[None], sock: socket.socket) -> None:
    proxy.stop()
    with contextlib.suppress(Exception):
        await serving
    sock.close()
