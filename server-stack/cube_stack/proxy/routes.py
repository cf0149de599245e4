"""The explicit route table: method + path template -> permission, upstream and handler kind.

This replaces Cube's ``determineAction`` (a ``strings.Contains`` over the path, so ``/x/api/chat/y``
counted as chat and anything unknown as ``read``): a request is served only when its method and path
match an entry here exactly, and the entry names the one permission it needs. Anything else is a JSON
404 and is never forwarded. :data:`AUTH_PERMISSIONS` maps our permission names to the names the
SuperMQ-compatible auth service checks (Cube's SpiceDB ``llm_*_permission`` relations).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

DOMAIN = "domain_id"  # the path parameter holding the domain (tenant) id


class Permission(enum.StrEnum):
    """What a route requires in its domain."""

    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    MODELS_READ = "models/read"
    MANAGE = "manage"


# Our permission -> the permission name the auth service (SuperMQ `Authorize`) understands.
AUTH_PERMISSIONS: dict[Permission, str] = {
    Permission.CHAT: "llm_chat_completions_permission",
    Permission.COMPLETIONS: "llm_completions_permission",
    Permission.EMBEDDINGS: "llm_embeddings_permission",
    Permission.MODELS_READ: "llm_read_permission",
    Permission.MANAGE: "admin",  # every domain administration action (domain admin role)
}

Api = Literal["ollama", "openai"]
Kind = Literal["forward", "attestation"]


@dataclass(frozen=True)
class ProxyRoute:
    """One entry: ``method`` on ``/{domain_id}`` + ``suffix`` needs ``permission`` (None: no token).

    The only route without a permission is attestation: a client must be able to check the proxy
    *before* it hands it a token, or an unattested server could collect tokens (DESIGN.md §1.2: the
    network is not trusted). It is rate-limited per client address instead.
    """

    method: str
    suffix: str  # the path after the domain, e.g. "/api/chat"; forwarded as-is to the runtime
    permission: Permission | None
    api: Api | None = None  # which runtime base URL serves it; None for local handlers
    kind: Kind = "forward"
    admin: bool = False  # only served when the `admin_routes` setting is on

    @property
    def template(self) -> str:
        """Return the Starlette path template (what audit logs and metrics name)."""
        return f"/{{{DOMAIN}}}{self.suffix}"


def _ollama(method: str, suffix: str, permission: Permission, *, admin: bool = False) -> ProxyRoute:
    return ProxyRoute(method, suffix, permission, "ollama", admin=admin)


def _openai(method: str, suffix: str, permission: Permission) -> ProxyRoute:
    return ProxyRoute(method, suffix, permission, "openai")


ROUTE_TABLE: tuple[ProxyRoute, ...] = (
    _ollama("POST", "/api/generate", Permission.COMPLETIONS),
    _ollama("POST", "/api/chat", Permission.CHAT),
    _ollama("POST", "/api/embed", Permission.EMBEDDINGS),
    _ollama("POST", "/api/embeddings", Permission.EMBEDDINGS),
    _ollama("GET", "/api/tags", Permission.MODELS_READ),
    _ollama("POST", "/api/show", Permission.MODELS_READ),
    _openai("POST", "/v1/completions", Permission.COMPLETIONS),
    _openai("POST", "/v1/chat/completions", Permission.CHAT),
    _openai("POST", "/v1/embeddings", Permission.EMBEDDINGS),
    _openai("GET", "/v1/models", Permission.MODELS_READ),
    ProxyRoute("POST", "/attestation", None, kind="attestation"),
    _ollama("POST", "/api/pull", Permission.MANAGE, admin=True),
    _ollama("POST", "/api/create", Permission.MANAGE, admin=True),
    _ollama("POST", "/api/copy", Permission.MANAGE, admin=True),
    _ollama("DELETE", "/api/delete", Permission.MANAGE, admin=True),
)


def active_routes(*, admin_routes: bool) -> tuple[ProxyRoute, ...]:
    """Return the entries this deployment serves."""
    return tuple(r for r in ROUTE_TABLE if admin_routes or not r.admin)
