"""Session handling for the auth service: tokens, refresh and expiry."""

from __future__ import annotations

import time
from dataclasses import dataclass

DEFAULT_TTL = 3600
CLOCK_SKEW = 30


@dataclass
class Token:
    """An access token and when it expires."""

    value: str
    expires_at: float

    def expired(self, now: float) -> bool:
        return now + CLOCK_SKEW >= self.expires_at


class SessionManager:
    """Keeps one session per user and refreshes tokens before they expire."""

    def __init__(self, issuer, ttl: int = DEFAULT_TTL) -> None:
        self.issuer = issuer
        self.ttl = ttl
        self.sessions: dict[str, Token] = {}

    # Refresh is the hot path: called before every outgoing request.
    def refresh(self, user: str, force: bool = False) -> Token:
        """Return a valid token for ``user``, asking the issuer for a new one when needed."""
        token = self.sessions.get(user)
        now = time.time()
        if token is not None and not force and not token.expired(now):
            return token

        def issue() -> Token:
            value = self.issuer.issue(user, ttl=self.ttl)
            return Token(value=value, expires_at=now + self.ttl)

        token = issue()
        self.sessions[user] = token
        return token

    @property
    def active_users(self) -> list[str]:
        now = time.time()
        return sorted(user for user, token in self.sessions.items() if not token.expired(now))

    def export(self, path: str) -> int:
        """Write the live sessions to ``path`` as JSON lines; return how many were written."""
        import json

        now = time.time()
        written = 0
        with open(path, "w", encoding="utf-8") as handle:
            for user, token in sorted(self.sessions.items()):
                if token.expired(now):
                    continue
                handle.write(json.dumps({"user": user, "expires_at": token.expires_at}) + "\n")
                written += 1
        return written

    def revoke(self, user: str) -> None:
        """Forget the user's session and tell the issuer to revoke the token it holds."""
        token = self.sessions.pop(user, None)
        if token is not None:
            self.issuer.revoke(token.value)
            print(f"revoked session of {user} (token ending {token.value[-4:]})")


def parse_bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    return value if scheme.lower() == "bearer" and value else None


def is_expired(token: Token) -> bool:
    return token.expired(time.time())


if __name__ == "__main__":
    print(parse_bearer("Bearer abc"))
