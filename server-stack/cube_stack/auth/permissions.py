"""Pure authorization rules: domain actions, permission names and PAT scope matching.

The action names are the ``role#member`` relations of ``definition domain`` in Cube's SpiceDB schema
(``contracts/supermq/cube-schema.zed``) minus the IoT ones (clients, channels, groups) this service has no
use for. A role holds actions; a user's actions in a domain are the union over the roles they are a
member of. Permission names are accepted with or without the ``_permission`` suffix, as SuperMQ and Cube
spell them (``llm_chat_completions_permission``), plus ``membership`` and ``admin``.
"""

from __future__ import annotations

from collections.abc import Iterable

from cube_stack.auth.errors import MalformedError
from cube_stack.auth.models import Scope

DOMAIN_ADMIN_ACTIONS: tuple[str, ...] = (
    "read",
    "update",
    "enable",
    "disable",
    "delete",
    "manage_role",
    "add_role_users",
    "remove_role_users",
    "view_role_users",
)
LLM_OPERATIONS: tuple[str, ...] = (
    "create",
    "update",
    "read",
    "delete",
    "chat_completions",
    "completions",
    "embeddings",
    "transcription",
    "translation",
    "utility",
    "pooling",
    "classification",
    "scoring",
    "rerank",
    "manage_role",
    "add_role_users",
    "remove_role_users",
    "view_role_users",
)
AUDIT_LOG_OPERATIONS: tuple[str, ...] = (
    "read",
    "export",
    "manage_role",
    "add_role_users",
    "remove_role_users",
    "view_role_users",
)
AVAILABLE_ACTIONS: tuple[str, ...] = (
    DOMAIN_ADMIN_ACTIONS
    + tuple(f"llm_{op}" for op in LLM_OPERATIONS)
    + tuple(f"audit_log_{op}" for op in AUDIT_LOG_OPERATIONS)
)
_AVAILABLE = frozenset(AVAILABLE_ACTIONS)

SCOPE_OPERATIONS: dict[str, tuple[str, ...]] = {
    "domains": DOMAIN_ADMIN_ACTIONS,
    "llm": LLM_OPERATIONS,
    "audit_log": AUDIT_LOG_OPERATIONS,
}
# Friendly operation names accepted on input and stored in canonical form.
_SCOPE_ALIASES: dict[tuple[str, str], str] = {
    ("llm", "chat"): "chat_completions",
    ("llm", "models"): "read",
    ("llm", "models/read"): "read",
}
ANY = "*"


def normalize_permission(permission: str) -> str:
    """Return the action a permission name asks for ("membership", "admin" or an available action)."""
    name = permission.removesuffix("_permission")
    if name == "audit_log":  # Cube checks `audit_log_permission`, which its schema never defines
        name = "audit_log_read"
    if name in {"membership", "admin"} or name in _AVAILABLE:
        return name
    raise MalformedError(f"unknown permission {permission!r}", code="auth.unknown_permission")


def validate_actions(actions: Iterable[str]) -> tuple[str, ...]:
    """Return ``actions`` de-duplicated in order, or raise naming the first unknown one."""
    result: list[str] = []
    for action in actions:
        if action not in _AVAILABLE:
            raise MalformedError(f"unknown action {action!r}", code="auth.unknown_action")
        if action not in result:
            result.append(action)
    return tuple(result)


def actions_allow(actions: frozenset[str], action: str) -> bool:
    """Return whether a member holding ``actions`` has the normalized ``action`` (see the schema's rules)."""
    if action == "membership":
        return bool(actions)
    if action == "admin":
        return all(a in actions for a in DOMAIN_ADMIN_ACTIONS)
    return action in actions


def canonical_scope(entity_type: str, operation: str) -> tuple[str, str]:
    """Return ``(entity_type, operation)`` with aliases resolved, or raise for unknown names."""
    operations = SCOPE_OPERATIONS.get(entity_type)
    if operations is None:
        allowed = ", ".join(sorted(SCOPE_OPERATIONS))
        raise MalformedError(
            f"unsupported scope entity_type {entity_type!r}: expected one of {allowed}",
            code="auth.invalid_scope",
        )
    if operation == "manage":
        operation = ANY
    operation = _SCOPE_ALIASES.get((entity_type, operation), operation)
    if operation != ANY and operation not in operations:
        raise MalformedError(
            f"unsupported scope operation {operation!r} for entity_type {entity_type!r}",
            code="auth.invalid_scope",
        )
    return entity_type, operation


def _action_scope(action: str) -> tuple[str, str]:
    for prefix, entity_type in (("llm_", "llm"), ("audit_log_", "audit_log")):
        if action.startswith(prefix):
            return entity_type, action.removeprefix(prefix)
    return "domains", action


def scopes_allow(scopes: Iterable[Scope], domain_id: str, action: str) -> bool:
    """Return whether PAT ``scopes`` cover the normalized ``action`` in ``domain_id``."""
    relevant = [s for s in scopes if s.domain_id in (ANY, domain_id) and s.entity_id in (ANY, domain_id)]
    if action == "membership":
        return bool(relevant)
    if action == "admin":
        return any(s.entity_type == "domains" and s.operation == ANY for s in relevant)
    entity_type, operation = _action_scope(action)
    return any(s.entity_type == entity_type and s.operation in (ANY, operation) for s in relevant)
