"""Support for the schemathesis run of SuperMQ's contract against our auth service.

The standalone `cube-stack auth serve` process serves it on 127.0.0.1 (port 0), on SQLite with cheap
argon2, as an operator runs it; a seeded world (a domain, a role, a PAT, a member) lets generated cases
reach past 404s; every response goes through the checks one by one, and a failure is dropped only when
it matches a :class:`Waiver` (one operation, one status, one check, one reason: a SOURCES.md "Known
defects" item or a deviation listed in ``docs/supermq-deviations.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from cube_auth_testkit import ADMIN
from schemathesis import Case
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# tests/stack/auth/<this file> -> parents[3] is the repository; the contract sits beside it in ../shared.
SHARED = Path(__file__).resolve().parents[3].parent / "shared"
CONTRACT = SHARED / "contracts" / "supermq"
OPENAPI = CONTRACT / "openapi"

CHECKS: tuple[CheckFunction, ...] = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

_LISTENING = re.compile(r"auth\.listening http=(http://\S+) ")
MEMBER = {"username": "member", "email": "member@example.com", "password": "member-password"}


# --- the server -------------------------------------------------------------------------------------


@contextmanager
def serve(data_dir: Path) -> Iterator[str]:
    """Run `cube-stack auth serve` (the standalone process) on SQLite on 127.0.0.1; yield its base URL."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CUBE_AUTH_")} | {
        "CUBE_AUTH_DATA_DIR": str(data_dir),
        "CUBE_AUTH_SQLITE_SYNCHRONOUS": "off",  # throw-away file
        "CUBE_AUTH_ARGON2_TIME_COST": "1",  # cheap argon2id, tests only
        "CUBE_AUTH_ARGON2_MEMORY_KIB": "8",
        "CUBE_AUTH_ARGON2_PARALLELISM": "1",
        "CUBE_AUTH_ADMIN_USERNAME": ADMIN["username"],
        "CUBE_AUTH_ADMIN_EMAIL": ADMIN["email"],
        "CUBE_AUTH_ADMIN_PASSWORD": ADMIN["password"],
        "CUBE_AUTH_HTTP_LISTEN": "127.0.0.1:0",
        "CUBE_AUTH_GRPC_LISTEN": "127.0.0.1:0",
    }
    argv = [sys.executable, "-m", "cube_stack.cli", "auth", "serve", "--log-level", "info"]
    child = subprocess.Popen(
        argv,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stderr is not None
    seen: list[str] = []
    try:
        for line in child.stderr:  # its own "listening" line is the readiness signal
            seen.append(line)
            if match := _LISTENING.search(line):
                break
        else:
            raise RuntimeError(f"the auth service exited ({child.wait()}):\n{''.join(seen)}")
        # Keep draining its log so it never blocks on a full pipe.
        drain = threading.Thread(target=lambda: [None for _ in child.stderr or ()], daemon=True)
        drain.start()
        yield match.group(1)
    finally:
        child.send_signal(signal.SIGTERM)
        status = child.wait(timeout=30)
        child.stderr.close()
        assert status == 0, f"the auth service exited with {status} on SIGTERM"


# --- the seeded world -------------------------------------------------------------------------------


@dataclass
class World:
    """What exists on the server before the run, and helpers that make fresh objects for one case."""

    base_url: str
    session: requests.Session
    access_token: str = ""
    pat_secret: str = ""
    member_id: str = ""
    domain_id: str = ""  # most domain, role and member operations
    status_domain_id: str = ""  # enable / disable / freeze only, so the main domain stays usable
    role_id: str = ""  # a custom role in domain_id
    admin_role_id: str = ""  # the built-in admin role of domain_id
    pat_id: str = ""  # a PAT of the admin with one scope
    scope_id: str = ""
    roles_made: int = 0
    names_made: int = 0  # a serial for generated names (see ``prepare``)

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token or self.access_token}"}
        response = self.session.request(method, self.base_url + path, json=body, headers=headers, timeout=10)
        assert response.status_code < 300, f"seeding {method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def login(self, username: str = ADMIN["username"], password: str = ADMIN["password"]) -> dict[str, str]:
        response = self.session.post(
            self.base_url + "/users/tokens/issue",
            json={"username": username, "password": password},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def seed(self) -> None:
        self.access_token = self.login()["access_token"]
        member = self.request(
            "POST",
            "/users",
            {
                "first_name": "Member",
                "last_name": "Tester",
                "email": MEMBER["email"],
                "credentials": {"username": MEMBER["username"], "secret": MEMBER["password"]},
            },
        )
        self.member_id = member["id"]
        self.domain_id = self.request("POST", "/domains", {"name": "Fuzzed", "route": "fuzzed"})["id"]
        self.status_domain_id = self.request("POST", "/domains", {"name": "Status", "route": "status"})["id"]
        self.role_id = self.fresh_role()
        roles = self.request("GET", f"/domains/{self.domain_id}/roles?limit=100")["roles"]
        self.admin_role_id = next(r["id"] for r in roles if r["id"] != self.role_id)
        pat = self.request("POST", "/pats", self.pat_body())
        self.pat_id, self.pat_secret, self.scope_id = pat["id"], pat["secret"], pat["scopes"][0]["id"]

    def pat_body(self) -> dict[str, Any]:
        scope = {"domain_id": self.domain_id, "entity_type": "domains", "operation": "read", "entity_id": "*"}
        return {"name": "fuzz", "duration": "720h", "scopes": [scope]}

    def fresh_role(self) -> str:
        self.roles_made += 1
        body = {
            "role_name": f"editors-{self.roles_made}",
            "optional_actions": ["read"],
            "optional_members": [self.member_id],
        }
        return str(self.request("POST", f"/domains/{self.domain_id}/roles", body)["id"])

    def fresh_pat(self) -> tuple[str, str]:
        """Return (PAT id, its one scope id) of a new PAT, for cases that delete or revoke."""
        pat = self.request("POST", "/pats", self.pat_body())
        return pat["id"], pat["scopes"][0]["id"]

    def fresh_refresh_token(self) -> str:
        return self.login()["refresh_token"]


# --- case preparation -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-able stand-in for a case component (``NOT_SET`` and bytes included)."""
    if value is None or isinstance(value, str | int | float | bool | list | dict):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return type(value).__name__


def bucket(case: Case, salt: str, size: int) -> int:
    """A deterministic function of the generated data: the same case always makes the same choices.

    Hypothesis replays cases while shrinking; a counter would change the choice between replays and make
    a failure flaky. Python's ``hash`` of a string varies between runs, so use SHA-256.
    """
    parts = [
        case.operation.label,
        salt,
        _plain(case.path_parameters),
        _plain(case.query),
        _plain(dict(case.headers or {})),
        _plain(case.body),
    ]
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).digest()
    return int.from_bytes(digest[:8], "big") % size


# How a case authenticates (the spec's `security` is too coarse, see SOURCES.md items 5 and 7).
ANONYMOUS = frozenset({"POST /users/tokens/issue"})
REFRESH = "POST /users/tokens/refresh"
# Cases that destroy their object get a fresh one, so the shared world survives the run.
DESTROYS_ROLE = frozenset({"DELETE /domains/{domainID}/roles/{roleID}"})
DESTROYS_PAT = frozenset(
    {
        "DELETE /pats/{patID}",
        "PATCH /pats/{patID}/secret/revoke",
        "DELETE /pats/{patID}/scope",
        "PATCH /pats/{patID}/scope/remove",
    }
)
STATUS_OPERATIONS = frozenset(
    {f"POST /domains/{{domainID}}/{verb}" for verb in ("enable", "disable", "freeze")}
)


@dataclass
class Prepared:
    """What :func:`prepare` did to a case (for the summary)."""

    auth: str  # "access", "pat", "refresh", "generated" or "none"
    real_ids: bool


def _set_header(case: Case, name: str, value: str) -> None:
    headers = dict(case.headers or {})
    headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
    headers[name] = value
    case.headers = headers


def prepare(case: Case, world: World) -> Prepared:
    """Give the case credentials and real ids most of the time, and realistic bodies most of the time."""
    label = case.operation.label
    auth_roll = bucket(case, "auth", 12)
    real_ids = bucket(case, "ids", 4) != 3
    # Two in three: the spec leaves names free, and most generated ones are refused (400), so a
    # creation route would rarely get past validation to the code behind it.
    realistic_body = bucket(case, "body", 3) != 0
    role_roll = bucket(case, "role", 3)
    # Unique names: Hypothesis may send the same case twice (a replay, a duplicate draw), and a name
    # already taken is a 409 the spec does not list. The serial changes only the name, never a choice.
    world.names_made += 1
    tag = f"{bucket(case, 'tag', 16**8):08x}{world.names_made:x}"
    body = case.body if isinstance(case.body, dict) else None

    if label in ANONYMOUS:
        auth = "none"
        if realistic_body and body is not None:
            body["username"], body["password"] = ADMIN["username"], ADMIN["password"]
    elif label == REFRESH:
        if auth_roll == 11:
            auth = "generated"
        else:
            auth = "refresh"
            _set_header(case, "Authorization", f"Bearer {world.fresh_refresh_token()}")
            if auth_roll != 10:  # SOURCES.md item 5: without a JSON content type the server answers 415
                _set_header(case, "Content-Type", "application/json")
    elif auth_roll == 11:
        auth = "generated"  # whatever schemathesis generated (often nothing): the 401 paths
    elif auth_roll in (9, 10):
        auth = "pat"  # the admin's PAT: scope checks, and 403 on management routes
        _set_header(case, "Authorization", f"Bearer {world.pat_secret}")
    else:
        auth = "access"
        _set_header(case, "Authorization", f"Bearer {world.access_token}")

    params = case.path_parameters
    if real_ids and params:
        if "domainID" in params:
            params["domainID"] = world.status_domain_id if label in STATUS_OPERATIONS else world.domain_id
        if "roleID" in params:
            if label in DESTROYS_ROLE:
                params["roleID"] = world.fresh_role()
            else:
                # Mostly the custom role; sometimes the built-in admin role (last-admin guards).
                params["roleID"] = world.admin_role_id if role_roll == 0 else world.role_id
        if "patID" in params:
            if label in DESTROYS_PAT:
                pat_id, scope_id = world.fresh_pat()
                params["patID"] = pat_id
                if realistic_body and body is not None and label.endswith("/scope/remove"):
                    body["scopes_id"] = [scope_id]
            else:
                params["patID"] = world.pat_id

    if realistic_body and body is not None:
        _realistic_body(label, body, world, tag)
    return Prepared(auth, real_ids)


def _realistic_body(label: str, body: dict[str, Any], world: World, tag: str) -> None:
    """Swap generated values the spec leaves free (names, action names, member ids) for ones we accept."""
    if label == "POST /users":
        body["email"] = f"fuzz-{tag}@example.com"
        body["credentials"] = {"username": f"fuzz-{tag}", "secret": "fuzz-password"}
        body["first_name"], body["last_name"] = "Fuzz", "Tester"
    elif label == "POST /domains":
        body["name"] = body.get("name") or "Fuzz"
        body["route"] = f"fuzz-{tag}"
    elif label == "POST /domains/{domainID}/roles":
        # Go's createRoleReq reads `role_name`; the spec's CreateRoleObj says `name` (not in SOURCES.md).
        body["role_name"] = f"fuzz-{tag}"
        body["optional_actions"] = ["read", "update"]
        body["optional_members"] = [world.member_id]
    elif label == "POST /domains/{domainID}/roles/{roleID}/actions":
        body["actions"] = ["read", "llm_chat_completions"]
    elif label in (
        "POST /domains/{domainID}/roles/{roleID}/members",
        "POST /domains/{domainID}/roles/{roleID}/members/delete",
    ):
        body["members"] = [world.member_id]
    elif label == "PATCH /pats/{patID}/scope/add":
        scope = {"optional_domain_id": world.domain_id, "entity_type": "domains", "operation": "update"}
        body["scopes"] = [scope | {"entity_id": "*"}]


# --- waivers ----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Waiver:
    """One known, documented mismatch: failures of ``check`` on ``operation`` answering ``status``."""

    operation: str
    status: int
    check: str
    reason: str  # "SOURCES.md #n: ..." or "deviation: ..." (docs/supermq-deviations.md)
    applies: Callable[[Case, Failure, Response], bool] = field(
        default=lambda _case, _failure, _response: True
    )


# --- the run ---------------------------------------------------------------------------------------


@dataclass
class Summary:
    """Counts across the run, printed at the end and shown on failure."""

    cases: Counter[str] = field(default_factory=Counter)
    statuses: defaultdict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    auth: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    waived: Counter[Waiver] = field(default_factory=Counter)

    def render(self, waivers: list[Waiver] | None = None) -> str:
        lines = [f"schemathesis: {sum(self.cases.values())} cases over {len(self.cases)} operations"]
        for label in sorted(self.cases):
            statuses = " ".join(f"{s}x{n}" for s, n in sorted(self.statuses[label].items()))
            auths = " ".join(f"{a}={n}" for a, n in sorted(self.auth[label].items()))
            lines.append(f"  {label:58} {self.cases[label]:3} cases  [{statuses}]  auth: {auths}")
        lines.append("waivers (operation status check: failures waived):")
        for waiver in waivers if waivers is not None else sorted(self.waived, key=repr):
            key = f"{waiver.operation} {waiver.status} {waiver.check}"
            lines.append(f"  {key:82} {self.waived[waiver]:3}  {waiver.reason}")
        return "\n".join(lines)


def _json(response: Response) -> Any:
    try:
        return json.loads(response.content) if response.content else None
    except ValueError:
        return ...


def _timestamps(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key.endswith("_at"):
                yield key, item
            yield from _timestamps(item)
    elif isinstance(value, list):
        for item in value:
            yield from _timestamps(item)


def our_conventions(response: Response) -> list[str]:
    """Our side of two documented deviations, checked on every response.

    Error bodies are ``{"message", "code"}`` (SOURCES.md #4: the spec says ``{"error"}``, Go writes
    ``{"message"}``); a timestamp without a value is omitted, never ``null`` nor Go's zero time.
    """
    body = _json(response)
    if response.status_code >= 400:
        if not (
            isinstance(body, dict)
            and isinstance(body.get("message"), str)
            and isinstance(body.get("code"), str)
        ):
            return [f"[error_body] expected {{'message': str, 'code': str}}, got {response.text[:200]!r}"]
        return []
    return [
        f"[timestamps] {key}={value!r}: an unset timestamp must be omitted"
        for key, value in _timestamps(body)
        if not isinstance(value, str) or not value or value.startswith("0001-01-01")
    ]


def run_case(case: Case, world: World, waivers: list[Waiver], summary: Summary) -> None:
    """Prepare, send and check one case; raise AssertionError listing every failure no waiver covers."""
    prepared = prepare(case, world)
    response = case.call(base_url=world.base_url, session=world.session, timeout=10)
    label = case.operation.label
    summary.cases[label] += 1
    summary.statuses[label][response.status_code] += 1
    summary.auth[label][prepared.auth] += 1
    unexplained = our_conventions(response)
    for check in CHECKS:
        try:
            case.validate_response(response, checks=[check])
        except FailureGroup as group:
            for failure in group.exceptions:
                waiver = next(
                    (
                        w
                        for w in waivers
                        if w.operation == label
                        and w.status == response.status_code
                        and w.check == check.__name__
                        and w.applies(case, failure, response)
                    ),
                    None,
                )
                if waiver is not None:
                    summary.waived[waiver] += 1
                    continue
                unexplained.append(f"[{check.__name__}] {failure.title}: {failure.message}")
    if unexplained:
        body = response.content[:2000].decode("utf-8", "replace")
        raise AssertionError(
            f"{label} answered {response.status_code} (auth={prepared.auth}, real ids={prepared.real_ids}):\n"
            + "\n".join(unexplained)
            + f"\n\nresponse body: {body}\n\nreproduce with (the bearer is filtered):\n    "
            + case.as_curl_command(headers=dict(response.request.headers))
        )
