"""Helpers for the auth gRPC tests: a hand-moved clock and a small world of users, a domain and a PAT."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cube_stack.auth import AuthService, Principal, UserRole
from cube_stack.auth.models import UserStatus
from cube_stack.auth.requests import NewDomain, NewPat, NewUser, ScopeSpec

ADMIN = {"username": "admin", "email": "admin@example.com", "password": "admin-password-1"}
START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Account:
    id: str
    access_token: str
    refresh_token: str
    principal: Principal


@dataclass
class World:
    """The admin, alice (creator, so admin, of ``domain``), bob (no member) and alice's chat-only PAT."""

    admin: Account
    alice: Account
    bob: Account
    domain: str
    pat: str
    pat_id: str

    def secrets(self) -> list[str]:
        accounts = (self.admin, self.alice, self.bob)
        return [self.pat, *(a.access_token for a in accounts), *(a.refresh_token for a in accounts)]


async def login(service: AuthService, username: str, password: str) -> Account:
    tokens = await service.issue_tokens(username, password)
    principal = await service.authenticate(tokens.access_token)
    return Account(principal.user_id, tokens.access_token, tokens.refresh_token, principal)


async def make_user(service: AuthService, admin: Principal, username: str) -> Account:
    new = NewUser(
        first_name=username.title(),
        last_name="Tester",
        email=f"{username}@example.com",
        username=username,
        secret=f"{username}-password",
        tags=(),
        metadata={},
        status=UserStatus.ENABLED,
        role=UserRole.USER,
    )
    await service.create_user(admin, new)
    return await login(service, username, f"{username}-password")


async def make_world(service: AuthService) -> World:
    admin = await login(service, ADMIN["username"], ADMIN["password"])
    alice = await make_user(service, admin.principal, "alice")
    bob = await make_user(service, admin.principal, "bob")
    domain = await service.create_domain(alice.principal, NewDomain(None, "Alpha", "alpha", (), {}))
    scope = ScopeSpec(domain.id, "llm", domain.id, "chat_completions")
    pat, secret = await service.create_pat(alice.principal, NewPat("ci", "", timedelta(hours=2), (scope,)))
    return World(admin, alice, bob, domain.id, secret, pat.id)
