"""The auth core: :class:`AuthService`, pure async methods shared by HTTP, gRPC and the proxy.

``authenticate(token) -> Principal`` accepts an access JWT or a PAT (never a refresh token);
``authorize(principal, domain_id, permission)`` returns or raises. Both read the user from the store:
a token's subject must name an enabled user, whose role comes from the database, never from the token,
and an access token's refresh-token family (``sid``) must not be revoked. Everything else (login, refresh,
users, domains, roles, PATs, key rotation) is here too, so the HTTP handlers only parse and render.
Time comes from the injected clock; nothing in this module logs a token, password or PAT secret.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime

from cube_stack.auth import pats as patmod
from cube_stack.auth.errors import (
    AuthenticationError,
    AuthorizationError,
    AuthSettingsError,
    MalformedError,
    NotFoundError,
    SigningKeyError,
    TooManyAttemptsError,
)
from cube_stack.auth.keyfiles import KeyDirectory, load_key_file
from cube_stack.auth.keys import ACTIVE, RETIRING, KeyRing, SigningKey, generate_signing_key
from cube_stack.auth.migrations import migrate
from cube_stack.auth.models import (
    Clock,
    Domain,
    DomainStatus,
    PersonalAccessToken,
    Principal,
    RefreshSession,
    Role,
    Scope,
    TokenPair,
    TokenType,
    User,
    UserRole,
    UserStatus,
    utc_now,
)
from cube_stack.auth.passwords import PasswordHasher
from cube_stack.auth.permissions import (
    AVAILABLE_ACTIONS,
    DOMAIN_ADMIN_ACTIONS,
    actions_allow,
    normalize_permission,
    scopes_allow,
)
from cube_stack.auth.requests import DomainUpdate, NewDomain, NewPat, NewRole, NewUser, ScopeSpec
from cube_stack.auth.settings import AuthSettings
from cube_stack.auth.store import Store, create_engine
from cube_stack.auth.throttle import LoginThrottle
from cube_stack.auth.tokens import Claims, decode_token, encode_token, read_kid

log = logging.getLogger(__name__)

ADMIN_ROLE = "admin"  # the built-in role every new domain gets, holding every action
_DISABLED_DOMAIN_ACTIONS = frozenset((*DOMAIN_ADMIN_ACTIONS, "admin", "membership"))


def _event(name: str, **fields: object) -> None:
    """Log one structured event; callers pass ids and counts only, never secrets."""
    rendered = " ".join(f"{k}={v}" for k, v in fields.items())
    log.info("%s %s", name, rendered, extra={"event": name, **fields})


def missing_token() -> AuthenticationError:
    """Return SuperMQ's error for an absent or non-Bearer Authorization header."""
    return AuthenticationError("missing or invalid bearer user token", code="auth.missing_token")


class AuthService:
    """Users, tokens, domains and PATs over one :class:`Store`; see the module docstring."""

    def __init__(self, settings: AuthSettings, store: Store, *, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.store = store
        self._clock = clock
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        self._password_pattern = re.compile(settings.password_pattern)
        self.key_files = KeyDirectory(settings.effective_signing_key_dir)
        self._keyring: KeyRing | None = None
        self._keys_loaded_at: datetime | None = None
        self._private_keys: dict[str, SigningKey] = {}  # kid -> key with its private half, read once
        self._key_lock = asyncio.Lock()
        self._file_ring: KeyRing | None = None  # the operator's key files, when settings name them
        self._throttle = LoginThrottle.from_settings(settings, clock)

    @classmethod
    async def open(
        cls, settings: AuthSettings, *, clock: Clock = utc_now, signing: bool = True
    ) -> AuthService:
        """Check the key files, connect, migrate, make sure a signing key exists and bootstrap the admin.

        Refuses to start (:class:`SigningKeyError`) when the key directory or a key file is open to
        group or others, or when the active key's file is missing or does not match the database. With
        ``settings.signing_key_file`` the keys come from the operator's files alone (see
        :func:`file_keyring`). ``signing=False`` (the admin commands, which issue no JWT) touches no key.
        """
        file_ring = file_keyring(settings) if signing and settings.signing_key_file is not None else None
        if signing and file_ring is None:
            KeyDirectory(settings.effective_signing_key_dir).prepare()
        store = Store(create_engine(settings))
        try:
            await migrate(store.engine)
            service = cls(settings, store, clock=clock)
            if file_ring is not None:
                service._file_ring = file_ring
                await service.reload_keys()
            elif signing:
                made = await store.ensure_active_key(clock(), service.key_files)
                if made is not None:
                    _event("auth.key_created", kid=made.kid)
                await service.reload_keys(strict=True)
            await service._bootstrap_admin()
        except BaseException:
            await store.close()
            raise
        return service

    async def close(self) -> None:
        """Release the database engine."""
        await self.store.close()

    def now(self) -> datetime:
        """Return the injected clock's current time."""
        return self._clock()

    async def acting_admin(self, username: str) -> Principal:
        """Return platform admin ``username`` as a principal, for the admin commands (no password asked)."""
        user = await self.store.find_user(username)
        if user is None or user.role is not UserRole.ADMIN or user.status is not UserStatus.ENABLED:
            raise AuthorizationError(
                f"{username!r} is not an enabled platform admin of this database "
                "(bootstrap one with CUBE_AUTH_ADMIN_USERNAME, _EMAIL and _PASSWORD)",
                code="auth.admin_required",
            )
        return Principal(user.id, user.role, user.verified_at is not None, TokenType.ACCESS)

    async def _bootstrap_admin(self) -> None:
        s = self.settings
        if not (s.admin_username and s.admin_email and s.admin_password):
            return
        if await self.store.find_user(s.admin_username) is not None:
            return
        new = NewUser(
            first_name="admin",
            last_name="admin",
            email=s.admin_email.lower(),
            username=s.admin_username,
            secret=s.admin_password,
            tags=(),
            metadata={},
            status=UserStatus.ENABLED,
            role=UserRole.ADMIN,
        )
        user = await self._insert_user(new, UserRole.ADMIN, verified=True)
        _event("auth.admin_bootstrapped", user_id=user.id)

    # signing keys

    async def reload_keys(self, *, strict: bool = False) -> KeyRing:
        """Load the active and retiring public keys from the database and the active key's file.

        ``strict`` (at start): a missing or wrong key file raises. Later reloads (another replica rotated)
        keep verifying with the new public keys and log the problem; signing then fails until it is fixed.
        """
        async with self._key_lock:
            if self._file_ring is not None:  # keys from files: nothing changes until a restart
                self._keyring, self._keys_loaded_at = self._file_ring, self.now()
                return self._file_ring
            ring = KeyRing.from_keys(await self.store.load_keys())
            try:
                ring = ring.with_active(self._private_key(ring.active))
            except SigningKeyError as exc:
                if strict:
                    raise
                log.error(
                    "auth.signing_key_unavailable kid=%s code=%s path=%s",
                    ring.active.kid,
                    exc.code,
                    exc.path,
                    extra={"event": "auth.signing_key_unavailable", "kid": ring.active.kid, "code": exc.code},
                )
            self._keyring = ring
            self._keys_loaded_at = self.now()
            return self._keyring

    def _private_key(self, key: SigningKey) -> SigningKey:
        cached = self._private_keys.get(key.kid)
        if cached is None:
            cached = self.key_files.load(key)
            self._private_keys[key.kid] = cached
        return dataclasses.replace(cached, state=key.state)

    async def _signing_key(self) -> SigningKey:
        ring = await self.keyring()
        if ring.active.private_key is None:  # only after a failed non-strict reload
            ring = ring.with_active(self._private_key(ring.active))
        return ring.active

    async def keyring(self) -> KeyRing:
        """Return the current key ring, loading it if needed."""
        return self._keyring if self._keyring is not None else await self.reload_keys()

    async def _verification_key(self, kid: str) -> SigningKey:
        ring = await self.keyring()
        key = ring.verifiers.get(kid)
        if key is None and (
            self._keys_loaded_at is None
            or self.now() - self._keys_loaded_at >= self.settings.key_reload_interval
        ):
            # Another replica may have rotated; reload at most once per interval so garbage kids
            # cannot turn into a database query each.
            key = (await self.reload_keys()).verifiers.get(kid)
        if key is None:
            raise AuthenticationError("token signed by an unknown key", code="auth.unknown_key")
        return key

    async def rotate_signing_key(self) -> str:
        """Make a new active key (in its own file), keep the previous one verifying, retire older ones."""
        if self._file_ring is not None:
            raise AuthSettingsError(
                "signing_key_file",
                "keys come from files: restart with a new signing key and the old one as a previous key",
            )
        key = generate_signing_key()
        await self.store.rotate_keys(key, self.now(), self.key_files)
        self._private_keys[key.kid] = key
        await self.reload_keys()
        _event("auth.key_rotated", kid=key.kid)
        return key.kid

    async def jwks(self) -> dict[str, object]:
        """Return the JWKS document of the keys that verify tokens."""
        return (await self.keyring()).jwks()

    # authentication

    async def _verify_jwt(self, token: str) -> Claims:
        key = await self._verification_key(read_kid(token))
        return decode_token(token, key.public_key, issuer=self.settings.issuer, now=self.now())

    async def authenticate(self, token: str) -> Principal:
        """Return who ``token`` (access JWT or PAT) belongs to; refresh tokens are refused."""
        if not token:
            raise missing_token()
        if patmod.looks_like_pat(token):
            return await self._authenticate_pat(token)
        claims = await self._verify_jwt(token)
        if claims.token_type is not TokenType.ACCESS:
            raise AuthenticationError(
                "a refresh token cannot be used as a bearer token; use the access token",
                code="auth.wrong_token_type",
            )
        user, family_live = await self.store.access_subject(claims.subject, claims.session_id)
        if user is None:
            raise AuthenticationError("the token's subject is not a known user", code="auth.unknown_subject")
        if user.status is not UserStatus.ENABLED:
            raise AuthenticationError("user is disabled", code="auth.user_disabled")
        if not family_live:
            raise AuthenticationError(
                "this token's session was revoked; log in again", code="auth.session_revoked"
            )
        return Principal(  # the role is today's, not the one written into the token
            user_id=user.id,
            role=user.role,
            verified=user.verified_at is not None,
            token_type=TokenType.ACCESS,
            session_id=claims.session_id,
        )

    async def _authenticate_pat(self, token: str) -> Principal:
        found = await self.store.get_pat(patmod.parse_pat_id(token))
        if found is None or not patmod.pat_matches(token, found[1]):
            raise AuthenticationError("invalid personal access token", code="auth.invalid_token")
        pat, _ = found
        now = self.now()
        if pat.revoked:
            raise AuthenticationError("personal access token is revoked", code="auth.pat_revoked")
        if now >= pat.expires_at:
            raise AuthenticationError("personal access token expired", code="auth.pat_expired")
        user = await self.store.get_user(pat.user_id)
        if user is None or user.status is not UserStatus.ENABLED:
            raise AuthenticationError("user is disabled", code="auth.user_disabled")
        await self.store.touch_pat(pat, now)
        return Principal(
            user_id=user.id,
            role=user.role,
            verified=user.verified_at is not None,
            token_type=TokenType.PAT,
            token_id=pat.id,
            scopes=pat.scopes,
        )

    # authorization

    async def authorize(self, principal: Principal, domain_id: str, permission: str) -> None:
        """Return if ``principal`` has ``permission`` in ``domain_id``, else raise 403 (404 for admins).

        The principal may come from elsewhere (the proxy verified a JWT itself and says who and which
        role): the user is read again, so a subject that names no user, or a disabled one, is refused
        before any admin shortcut, the role is the database's, and a revoked ``session_id`` is 401.
        """
        action = normalize_permission(permission)
        principal = await self.current(principal)
        await self._authorize(principal, domain_id, action)

    async def current(self, principal: Principal) -> Principal:
        """Return ``principal`` with the role the database holds today, or raise if it may not act."""
        user, family_live = await self.store.access_subject(
            principal.user_id, "" if principal.is_pat else principal.session_id
        )
        if user is None:
            raise AuthorizationError("the subject is not a known user", code="auth.user_not_found")
        if user.status is not UserStatus.ENABLED:
            raise AuthorizationError("user is disabled", code="auth.user_disabled")
        if not family_live:
            raise AuthenticationError(
                "this token's session was revoked; log in again", code="auth.session_revoked"
            )
        return dataclasses.replace(principal, role=user.role, verified=user.verified_at is not None)

    async def _authorize(self, principal: Principal, domain_id: str, action: str) -> None:
        """Decide for a principal already checked against the store (:meth:`current` or authenticate)."""
        domain = await self.store.get_domain(domain_id)
        if principal.is_pat and not scopes_allow(principal.scopes, domain_id, action):
            raise AuthorizationError(
                f"personal access token scope does not allow {action!r} in this domain", code="auth.pat_scope"
            )
        if principal.is_admin:
            if domain is None:
                raise NotFoundError("domain not found", code="auth.domain_not_found")
            return  # platform admins pass every domain check (SpiceDB `organization->admin`)
        actions = (
            frozenset() if domain is None else await self.store.user_actions(domain_id, principal.user_id)
        )
        if domain is None or not actions:
            raise AuthorizationError("user is not a member of this domain", code="auth.not_domain_member")
        if domain.status is DomainStatus.FREEZED:
            raise AuthorizationError("domain is frozen", code="auth.domain_frozen")
        if domain.status is DomainStatus.DISABLED and not (
            action in _DISABLED_DOMAIN_ACTIONS and actions_allow(actions, "admin")
        ):
            raise AuthorizationError("domain is disabled", code="auth.domain_disabled")
        if not actions_allow(actions, action):
            raise AuthorizationError(
                f"permission {action!r} denied in this domain", code="auth.permission_denied"
            )

    @staticmethod
    def _require_user_token(principal: Principal) -> None:
        if principal.is_pat:
            raise AuthorizationError(
                "personal access tokens cannot be used for this operation; log in",
                code="auth.pat_not_allowed",
            )

    # users and sessions

    async def _insert_user(self, new: NewUser, role: UserRole, *, verified: bool) -> User:
        if not self._password_pattern.match(new.secret):
            raise MalformedError("password does not meet the requirements", code="auth.weak_password")
        now = self.now()
        user = User(
            id=str(uuid.uuid4()),
            username=new.username,
            email=new.email,
            first_name=new.first_name,
            last_name=new.last_name,
            role=role,
            status=new.status,
            tags=new.tags,
            metadata=new.metadata,
            created_at=now,
            updated_at=None,
            verified_at=now if verified else None,
            password_hash=await self._hasher.hash(new.secret),
        )
        await self.store.insert_user(user)
        return user

    async def create_user(self, caller: Principal | None, new: NewUser) -> User:
        """Create a user: by a platform admin, or self-registration (role forced to user) when enabled."""
        if caller is not None and caller.is_admin and not caller.is_pat:
            user = await self._insert_user(new, new.role, verified=True)
        elif self.settings.allow_self_register:
            user = await self._insert_user(new, UserRole.USER, verified=False)
        elif caller is None:
            raise missing_token()
        else:
            raise AuthorizationError("only a platform admin may create users", code="auth.admin_required")
        _event(
            "auth.user_created",
            user_id=user.id,
            role=user.role.label,
            by=caller.user_id if caller else "self",
        )
        return user

    async def get_user(self, principal: Principal) -> User:
        """Return the caller's own user record (``GET /users/profile``)."""
        user = await self.store.get_user(principal.user_id)
        if user is None:
            raise NotFoundError("entity not found", code="auth.user_not_found")
        return user

    def _claims(
        self, user: User, kind: TokenType, now: datetime, expires: datetime, *, jti: str = "", sid: str = ""
    ) -> Claims:
        return Claims(
            subject=user.id,
            token_type=kind,
            role=user.role,
            verified=user.verified_at is not None,
            issued_at=now,
            expires_at=expires,
            jti=jti,
            session_id=sid,
        )

    async def _token_pair(self, user: User, session: RefreshSession) -> TokenPair:
        key = await self._signing_key()
        now = self.now()
        issuer = self.settings.issuer
        family = session.family_id or session.id
        access = encode_token(
            key,
            issuer=issuer,
            claims=self._claims(
                user, TokenType.ACCESS, now, now + self.settings.access_token_ttl, sid=family
            ),
        )
        refresh = encode_token(
            key,
            issuer=issuer,
            claims=self._claims(user, TokenType.REFRESH, now, session.expires_at, jti=session.id),
        )
        return TokenPair(access_token=access, refresh_token=refresh)

    async def issue_tokens(
        self, identity: str, password: str, description: str = "", *, address: str = ""
    ) -> TokenPair:
        """Log in with username or email and password; return access and refresh tokens.

        Failed logins back off per account and per client ``address`` (empty: an in-process caller,
        the account alone counts): past the threshold the attempt is refused with 429 before the
        password is checked.
        """
        user = await self.store.find_user(identity)
        # An unknown identity is throttled like a known one, so the 429 does not reveal which exist.
        account = f"user:{user.id}" if user is not None else f"name:{identity.lower()}"
        try:
            self._throttle.admit(account=account, address=address)
        except TooManyAttemptsError as exc:
            _event("auth.login_throttled", retry_after=exc.retry_after)
            raise
        matches = await self._hasher.verify(user.password_hash if user else None, password)
        if user is None or not matches:
            _event("auth.login_failed", reason="invalid_credentials")
            raise AuthenticationError("invalid credentials", code="auth.invalid_credentials")
        self._throttle.succeeded(account=account, address=address)
        if user.status is not UserStatus.ENABLED:
            raise AuthenticationError("user is disabled", code="auth.user_disabled")
        now = self.now()
        if self._hasher.needs_rehash(user.password_hash):
            await self.store.set_password_hash(user.id, await self._hasher.hash(password), now)
        session = RefreshSession(
            id=str(uuid.uuid4()),
            user_id=user.id,
            description=description,
            issued_at=now,
            expires_at=now + self.settings.refresh_token_ttl,
        )
        await self.store.insert_refresh(session)  # a login starts a token family
        _event("auth.login", user_id=user.id, session=session.id)
        return await self._token_pair(user, session)

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Exchange a refresh token for new tokens; the old one is revoked, the session expiry kept.

        A refresh token that was already spent (or revoked) is a replay: someone holds a copy. The whole
        family of that login is revoked then (OAuth 2.1's advice), so the newest refresh token and the
        access tokens minted in the family stop working too.
        """
        if not refresh_token:
            raise missing_token()
        if patmod.looks_like_pat(refresh_token):
            raise AuthenticationError("expected a refresh token", code="auth.wrong_token_type")
        claims = await self._verify_jwt(refresh_token)
        if claims.token_type is not TokenType.REFRESH or not claims.jti:
            raise AuthenticationError("expected a refresh token", code="auth.wrong_token_type")
        found = await self.store.get_refresh(claims.jti)
        if found is None or found[0].user_id != claims.subject:
            raise AuthenticationError("refresh token is revoked", code="auth.refresh_revoked")
        old, revoked_at = found
        if revoked_at is not None:
            await self._revoke_family(old)
            raise AuthenticationError("refresh token is revoked", code="auth.refresh_revoked")
        user = await self.store.get_user(claims.subject)
        if user is None or user.status is not UserStatus.ENABLED:
            raise AuthenticationError("user is disabled", code="auth.user_disabled")
        now = self.now()
        session = RefreshSession(
            id=str(uuid.uuid4()),
            user_id=user.id,
            description=old.description,
            issued_at=now,
            expires_at=old.expires_at,  # no sliding renewal, as SuperMQ
            family_id=old.family_id or old.id,
        )
        if not await self.store.rotate_refresh(old.id, session, now):
            await self._revoke_family(old)  # spent by a concurrent refresh: a replay all the same
            raise AuthenticationError("refresh token is revoked", code="auth.refresh_revoked")
        _event("auth.refreshed", user_id=user.id, session=session.id)
        return await self._token_pair(user, session)

    async def _revoke_family(self, spent: RefreshSession) -> None:
        family = spent.family_id or spent.id
        revoked = await self.store.revoke_family(family, self.now())
        log.warning(
            "auth.refresh_replayed user_id=%s family=%s revoked=%s",
            spent.user_id,
            family,
            revoked,
            extra={"event": "auth.refresh_replayed", "user_id": spent.user_id, "family": family},
        )

    async def revoke_refresh_token(self, principal: Principal, token_id: str) -> None:
        """Revoke one of the caller's refresh tokens by its id (jti)."""
        self._require_user_token(principal)
        if not await self.store.revoke_refresh(token_id, principal.user_id, self.now()):
            raise NotFoundError("entity not found", code="auth.refresh_not_found")

    async def list_refresh_sessions(self, principal: Principal) -> list[RefreshSession]:
        """Return the caller's active refresh sessions."""
        self._require_user_token(principal)
        return await self.store.list_refresh(principal.user_id, self.now())

    # domains

    async def create_domain(self, principal: Principal, new: NewDomain) -> Domain:
        """Create a domain; its creator joins the built-in admin role holding every action."""
        self._require_user_token(principal)
        now = self.now()
        domain = Domain(
            id=new.id or str(uuid.uuid4()),
            name=new.name,
            route=new.route,
            status=DomainStatus.ENABLED,
            tags=new.tags,
            metadata=new.metadata,
            created_by=principal.user_id,
            created_at=now,
            updated_by=None,
            updated_at=None,
        )
        admin_role = Role(
            id=_role_id(),
            domain_id=domain.id,
            name=ADMIN_ROLE,
            actions=AVAILABLE_ACTIONS,
            created_by=principal.user_id,
            created_at=now,
        )
        await self.store.insert_domain(domain, admin_role, principal.user_id)
        _event("auth.domain_created", domain_id=domain.id, by=principal.user_id)
        return domain

    async def list_domains(
        self, principal: Principal, *, status: DomainStatus | None, offset: int, limit: int
    ) -> tuple[int, list[Domain]]:
        """Return the domains the caller belongs to (every domain for a platform admin)."""
        member = None if principal.is_admin else principal.user_id
        return await self.store.list_domains(member_id=member, status=status, offset=offset, limit=limit)

    async def _domain(self, principal: Principal, domain_id: str, permission: str) -> Domain:
        # The principal came from authenticate in this request: already read from the store.
        await self._authorize(principal, domain_id, normalize_permission(permission))
        domain = await self.store.get_domain(domain_id)
        if domain is None:  # deleted between the check and the read
            raise NotFoundError("domain not found", code="auth.domain_not_found")
        return domain

    async def get_domain(self, principal: Principal, domain_id: str) -> Domain:
        """Return a domain the caller is a member of."""
        return await self._domain(principal, domain_id, "membership")

    async def update_domain(self, principal: Principal, domain_id: str, change: DomainUpdate) -> Domain:
        """Change a domain's name, tags or metadata."""
        await self._domain(principal, domain_id, "update")
        values: dict[str, object] = {"updated_by": principal.user_id, "updated_at": self.now()}
        if change.name is not None:
            values["name"] = change.name
        if change.tags is not None:
            values["tags"] = list(change.tags)
        if change.metadata is not None:
            values["metadata"] = change.metadata
        await self.store.update_domain(domain_id, values)
        return await self._domain(principal, domain_id, "membership")

    async def set_domain_status(self, principal: Principal, domain_id: str, status: DomainStatus) -> None:
        """Enable, disable (domain admins) or freeze (platform admins only) a domain."""
        if status is DomainStatus.FREEZED and not principal.is_admin:
            raise AuthorizationError("only a platform admin may freeze a domain", code="auth.admin_required")
        permission = {DomainStatus.ENABLED: "enable", DomainStatus.DISABLED: "disable"}.get(status, "admin")
        await self._domain(principal, domain_id, permission)
        await self.store.update_domain(
            domain_id, {"status": status.value, "updated_by": principal.user_id, "updated_at": self.now()}
        )
        _event("auth.domain_status", domain_id=domain_id, status=status.value, by=principal.user_id)

    # roles and members

    async def _check_users_exist(self, user_ids: Sequence[str]) -> None:
        missing = set(user_ids) - await self.store.existing_user_ids(user_ids)
        if missing:
            raise NotFoundError(
                f"{len(missing)} of the listed users do not exist", code="auth.user_not_found"
            )

    async def _role(self, domain_id: str, role_id: str) -> Role:
        role = await self.store.get_role(domain_id, role_id)
        if role is None:
            raise NotFoundError("role not found", code="auth.role_not_found")
        return role

    async def create_role(self, principal: Principal, domain_id: str, new: NewRole) -> Role:
        """Create a role with actions and members in a domain."""
        await self._domain(principal, domain_id, "manage_role")
        await self._check_users_exist(new.members)
        role = Role(
            id=_role_id(),
            domain_id=domain_id,
            name=new.name,
            actions=new.actions,
            created_by=principal.user_id,
            created_at=self.now(),
        )
        await self.store.insert_role(role, list(dict.fromkeys(new.members)))
        return role

    async def list_roles(
        self, principal: Principal, domain_id: str, offset: int, limit: int
    ) -> tuple[int, list[Role]]:
        """Return a domain's roles."""
        await self._domain(principal, domain_id, "read")
        return await self.store.list_roles(domain_id, offset, limit)

    async def get_role(self, principal: Principal, domain_id: str, role_id: str) -> Role:
        """Return one role of a domain."""
        await self._domain(principal, domain_id, "read")
        return await self._role(domain_id, role_id)

    async def delete_role(self, principal: Principal, domain_id: str, role_id: str) -> None:
        """Delete a role; the built-in admin role cannot be deleted."""
        await self._domain(principal, domain_id, "manage_role")
        role = await self._role(domain_id, role_id)
        if role.name == ADMIN_ROLE:
            raise AuthorizationError("the built-in admin role cannot be deleted", code="auth.builtin_role")
        await self.store.delete_role(role.id)

    async def add_role_actions(
        self, principal: Principal, domain_id: str, role_id: str, actions: Sequence[str]
    ) -> tuple[str, ...]:
        """Add actions to a role and return its actions."""
        await self._domain(principal, domain_id, "manage_role")
        role = await self._role(domain_id, role_id)
        await self.store.add_role_actions(role.id, actions)
        return (await self._role(domain_id, role_id)).actions

    async def add_role_members(
        self, principal: Principal, domain_id: str, role_id: str, user_ids: Sequence[str]
    ) -> list[str]:
        """Add users to a role."""
        await self._domain(principal, domain_id, "add_role_users")
        role = await self._role(domain_id, role_id)
        await self._check_users_exist(user_ids)
        await self.store.add_role_members(role, user_ids)
        _event("auth.members_added", domain_id=domain_id, role_id=role.id, count=len(user_ids))
        return list(user_ids)

    async def list_role_members(
        self, principal: Principal, domain_id: str, role_id: str, offset: int, limit: int
    ) -> tuple[int, list[str]]:
        """Return a role's member ids."""
        await self._domain(principal, domain_id, "view_role_users")
        role = await self._role(domain_id, role_id)
        return await self.store.list_role_members(role.id, offset, limit)

    async def remove_role_members(
        self, principal: Principal, domain_id: str, role_id: str, user_ids: Sequence[str] | None
    ) -> None:
        """Remove users (``None``: all) from a role; the admin role keeps at least one member."""
        await self._domain(principal, domain_id, "remove_role_users")
        role = await self._role(domain_id, role_id)
        if role.name == ADMIN_ROLE:
            left = 0 if user_ids is None else await self.store.count_role_members(role.id, excluding=user_ids)
            if left == 0:
                raise AuthorizationError("a domain must keep at least one admin", code="auth.last_admin")
        await self.store.remove_role_members(role.id, user_ids)
        _event("auth.members_removed", domain_id=domain_id, role_id=role.id)

    async def list_domain_members(
        self, principal: Principal, domain_id: str, offset: int, limit: int
    ) -> tuple[int, list[tuple[str, list[Role]]]]:
        """Return a domain's members with the roles each holds."""
        await self._domain(principal, domain_id, "view_role_users")
        return await self.store.list_domain_members(domain_id, offset, limit)

    async def remove_domain_members(
        self, principal: Principal, domain_id: str, user_ids: Sequence[str]
    ) -> None:
        """Remove users from every role of a domain; the admin role keeps at least one member."""
        await self._domain(principal, domain_id, "remove_role_users")
        _, roles = await self.store.list_roles(domain_id, 0, 1_000_000)
        for role in roles:
            if (
                role.name == ADMIN_ROLE
                and await self.store.count_role_members(role.id, excluding=user_ids) == 0
            ):
                raise AuthorizationError("a domain must keep at least one admin", code="auth.last_admin")
        await self.store.remove_domain_members(domain_id, user_ids)
        _event("auth.members_removed", domain_id=domain_id, count=len(user_ids))

    # personal access tokens

    def _scopes(self, specs: Sequence[ScopeSpec]) -> tuple[Scope, ...]:
        return tuple(
            Scope(str(uuid.uuid4()), s.domain_id, s.entity_type, s.entity_id, s.operation) for s in specs
        )

    async def create_pat(self, principal: Principal, new: NewPat) -> tuple[PersonalAccessToken, str]:
        """Create a PAT; return it with its secret, which is never shown again."""
        self._require_user_token(principal)
        if new.duration.total_seconds() <= 0 or new.duration > self.settings.pat_max_ttl:
            raise MalformedError(
                f"invalid duration: must be positive and at most {self.settings.pat_max_ttl}",
                code="auth.invalid_duration",
            )
        now = self.now()
        pat = PersonalAccessToken(
            id=str(uuid.uuid4()),
            user_id=principal.user_id,
            name=new.name,
            description=new.description,
            issued_at=now,
            expires_at=now + new.duration,
            updated_at=None,
            last_used_at=None,
            revoked=False,
            revoked_at=None,
            scopes=self._scopes(new.scopes),
        )
        secret = patmod.new_pat(pat.id)
        await self.store.insert_pat(pat, patmod.hash_pat(secret))
        _event("auth.pat_created", pat_id=pat.id, user_id=principal.user_id, scopes=len(pat.scopes))
        return pat, secret

    async def get_pat(self, principal: Principal, pat_id: str) -> PersonalAccessToken:
        """Return one of the caller's PATs (404 for anyone else's)."""
        self._require_user_token(principal)
        found = await self.store.get_pat(pat_id)
        if found is None or found[0].user_id != principal.user_id:
            raise NotFoundError("personal access token not found", code="auth.pat_not_found")
        return found[0]

    async def list_pats(
        self, principal: Principal, offset: int, limit: int
    ) -> tuple[int, list[PersonalAccessToken]]:
        """Return the caller's PATs."""
        self._require_user_token(principal)
        return await self.store.list_pats(principal.user_id, offset, limit)

    async def revoke_pat(self, principal: Principal, pat_id: str) -> None:
        """Revoke one of the caller's PATs; it fails authentication from now on."""
        pat = await self.get_pat(principal, pat_id)
        await self.store.revoke_pat(pat.id, self.now())
        _event("auth.pat_revoked", pat_id=pat.id, user_id=principal.user_id)

    async def delete_pat(self, principal: Principal, pat_id: str) -> None:
        """Delete one of the caller's PATs."""
        pat = await self.get_pat(principal, pat_id)
        await self.store.delete_pat(pat.id)
        _event("auth.pat_deleted", pat_id=pat.id, user_id=principal.user_id)

    async def add_pat_scopes(
        self, principal: Principal, pat_id: str, specs: Sequence[ScopeSpec]
    ) -> PersonalAccessToken:
        """Add scopes to one of the caller's PATs."""
        pat = await self.get_pat(principal, pat_id)
        have = {(s.domain_id, s.entity_type, s.entity_id, s.operation) for s in pat.scopes}
        fresh = [s for s in specs if (s.domain_id, s.entity_type, s.entity_id, s.operation) not in have]
        await self.store.add_scopes(pat.id, self._scopes(fresh), self.now())
        return await self.get_pat(principal, pat_id)

    async def remove_pat_scopes(
        self, principal: Principal, pat_id: str, scope_ids: Sequence[str] | None
    ) -> PersonalAccessToken:
        """Remove scopes (``None``: all) from one of the caller's PATs."""
        pat = await self.get_pat(principal, pat_id)
        await self.store.remove_scopes(pat.id, scope_ids, self.now())
        return await self.get_pat(principal, pat_id)


def file_keyring(settings: AuthSettings) -> KeyRing:
    """Return the key ring of the operator's files: the current key signs, the previous ones verify."""
    if settings.signing_key_file is None:
        raise AuthSettingsError("signing_key_file", "not set")
    current = load_key_file(settings.signing_key_file, ACTIVE)
    if current.private_key is None:
        raise SigningKeyError(
            f"the current signing key {settings.signing_key_file} is a public key; it must be the private "
            "key that signs tokens",
            code="auth.signing_key_invalid",
            path=str(settings.signing_key_file),
        )
    verifiers = {current.kid: current}
    for path in settings.previous_signing_keys:
        key = load_key_file(path, RETIRING)
        verifiers.setdefault(key.kid, key)
    return KeyRing(active=current, verifiers=verifiers)


def _role_id() -> str:
    """Return a role id in SuperMQ's ``domain_<short id>`` shape."""
    return "domain_" + secrets.token_hex(10)
