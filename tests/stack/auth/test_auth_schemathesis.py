"""Schemathesis over SuperMQ's OpenAPI contract (users, domains, PATs) against our auth service.

The contract is read in place from ../shared/contracts/supermq/openapi; the test fails when it is missing.
The service runs as its own process, `cube-stack auth serve` on 127.0.0.1 (see
``schemathesis_support.py``). Every response goes through schemathesis' ``not_a_server_error``,
``status_code_conformance``, ``content_type_conformance``, ``response_headers_conformance`` and
``response_schema_conformance``, one check at a time, plus our own error-body and timestamp conventions.
A failure passes only when a :class:`Waiver` below names its
operation, status and check and gives the reason: a SOURCES.md "Known defects" item or a deviation in
docs/supermq-deviations.md. Generation is deterministic (fixed seed, ``derandomize``) and writes no
Hypothesis database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case, Response
from schemathesis.core.failures import Failure
from schemathesis.core.result import Ok
from schemathesis.openapi.checks import JsonSchemaError
from schemathesis_support import OPENAPI, Summary, Waiver, World, run_case, serve

pytestmark = pytest.mark.slow

# The operations of the contract our service implements (and this run covers), per contract file.
OPERATIONS = {
    "users": [
        ("POST", "/users"),
        ("GET", "/users/profile"),
        ("POST", "/users/tokens/issue"),
        ("POST", "/users/tokens/refresh"),
    ],
    "domains": [
        ("POST", "/domains"),
        ("GET", "/domains"),
        ("GET", "/domains/{domainID}"),
        ("PATCH", "/domains/{domainID}"),
        ("POST", "/domains/{domainID}/enable"),
        ("POST", "/domains/{domainID}/disable"),
        ("POST", "/domains/{domainID}/freeze"),
        ("GET", "/domains/roles/available-actions"),  # SOURCES.md #2: a stray domainID path parameter
        ("POST", "/domains/{domainID}/roles"),
        ("GET", "/domains/{domainID}/roles"),
        ("GET", "/domains/{domainID}/roles/{roleID}"),
        ("DELETE", "/domains/{domainID}/roles/{roleID}"),
        (
            "GET",
            "/domain/{domainID}/roles/members",
        ),  # SOURCES.md #3: the spec's singular "domain"; we serve both
        ("POST", "/domains/{domainID}/roles/{roleID}/actions"),
        ("GET", "/domains/{domainID}/roles/{roleID}/actions"),
        ("POST", "/domains/{domainID}/roles/{roleID}/members"),
        ("GET", "/domains/{domainID}/roles/{roleID}/members"),
        ("POST", "/domains/{domainID}/roles/{roleID}/members/delete"),
        ("POST", "/domains/{domainID}/roles/{roleID}/members/delete-all"),
    ],
    "auth": [
        ("POST", "/pats"),
        ("GET", "/pats"),
        ("GET", "/pats/{patID}"),
        ("DELETE", "/pats/{patID}"),
        ("PATCH", "/pats/{patID}/secret/revoke"),
        ("GET", "/pats/{patID}/scope"),
        ("DELETE", "/pats/{patID}/scope"),
        ("PATCH", "/pats/{patID}/scope/add"),
        ("PATCH", "/pats/{patID}/scope/remove"),
    ],
}
EXPECTED = {f"{method} {path}" for ops in OPERATIONS.values() for method, path in ops}

CONFIG = {
    "seed": 20261128,
    # Positive and negative cases; the coverage phase is off to keep the run under ~60 s on 2 cores.
    "generation": {"mode": "all", "deterministic": True, "database": "none"},
    "phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}},
}
RUN_SETTINGS = settings(
    max_examples=15,  # per operation
    derandomize=True,
    database=None,
    deadline=None,
    # A module-scoped server is shared on purpose; generated bodies are large by design.
    suppress_health_check=list(HealthCheck),
)


# --- waivers: each one operation, one status, one check, one reason -------------------------------


def _code(response: Response) -> str | None:
    try:
        body = json.loads(response.content)
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def _error(code: str, mentions: str = "") -> Callable[[Case, Failure, Response], bool]:
    """Match our error body with this stable ``code`` (and, if given, a word of the message)."""

    def applies(_case: Case, _failure: Failure, response: Response) -> bool:
        return _code(response) == code and mentions in response.text

    return applies


def _role_id_not_uuid(_case: Case, failure: Failure, _response: Response) -> bool:
    """Only a `format: uuid` failure on a value shaped like a role id, `domain_<sqid>`."""
    return (
        isinstance(failure, JsonSchemaError)
        and list(failure.schema_path)[-1:] == ["format"]
        and isinstance(failure.instance, str)
        and failure.instance.startswith("domain_")
    )


# Routes where a PAT bearer gets 403 auth.pat_not_allowed although the spec documents no 403 there.
PAT_REFUSED = [
    "POST /domains",
    "POST /pats",
    "GET /pats",
    "GET /pats/{patID}",
    "DELETE /pats/{patID}",
    "PATCH /pats/{patID}/secret/revoke",
    "GET /pats/{patID}/scope",
    "DELETE /pats/{patID}/scope",
    "PATCH /pats/{patID}/scope/add",
    "PATCH /pats/{patID}/scope/remove",
]
WAIVERS: list[Waiver] = [
    Waiver(
        "POST /users/tokens/refresh",
        201,
        "status_code_conformance",
        "SOURCES.md #5: the spec says 200; Go answers 201, and so do we",
    ),
    *(
        Waiver(
            label, status, "response_schema_conformance", "SOURCES.md #10: role ids are domain_<sqid>", check
        )
        for label, status in [
            ("POST /domains/{domainID}/roles", 201),
            ("GET /domains/{domainID}/roles", 200),
            ("GET /domains/{domainID}/roles/{roleID}", 200),
        ]
        for check in [_role_id_not_uuid]
    ),
    *(
        Waiver(
            label,
            403,
            "status_code_conformance",
            "deviation D4: a PAT on a management route gets 403 auth.pat_not_allowed",
            _error("auth.pat_not_allowed"),
        )
        for label in PAT_REFUSED
    ),
    *(
        Waiver(
            label,
            400,
            "status_code_conformance",
            "deviation D9: a patID that is not a UUID gets 400 auth.invalid_field",
            _error("auth.invalid_field", "patID"),
        )
        for label in (
            "DELETE /pats/{patID}",
            "PATCH /pats/{patID}/secret/revoke",
            "DELETE /pats/{patID}/scope",
        )
    ),
]


SUMMARY = Summary()


def _load(name: str) -> schemathesis.BaseSchema | None:
    path = OPENAPI / f"{name}.yaml"
    if not path.is_file():
        return None
    schema = schemathesis.openapi.from_path(path, config=schemathesis.Config.from_dict(CONFIG))
    wanted = set(OPERATIONS[name])
    return schema.include(lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in wanted)


SCHEMAS = {name: _load(name) for name in OPERATIONS}


def test_contract_is_present() -> None:
    """The contract is beside the repo, and every operation this run claims to cover is in it."""
    missing = [f"{name}.yaml" for name, schema in SCHEMAS.items() if schema is None]
    assert not missing, f"contract {missing} not found in {OPENAPI}: ../shared belongs beside the repo"
    loaded = set()
    for schema in SCHEMAS.values():
        assert schema is not None
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), f"the contract has an operation schemathesis cannot load: {result}"
            loaded.add(result.ok().label)
    assert loaded == EXPECTED, f"the contract's operations changed: {sorted(loaded ^ EXPECTED)}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with serve(tmp_path_factory.mktemp("auth-schemathesis")) as base_url, requests.Session() as session:
        seeded = World(base_url, session)
        seeded.seed()
        yield seeded


def _check(case: Case, world: World) -> None:
    try:
        run_case(case, world, WAIVERS, SUMMARY)
    except AssertionError as exc:
        exc.add_note(SUMMARY.render(WAIVERS))
        raise


if all(SCHEMAS.values()):
    users_schema, domains_schema, auth_schema = SCHEMAS["users"], SCHEMAS["domains"], SCHEMAS["auth"]
    assert users_schema is not None and domains_schema is not None and auth_schema is not None

    @users_schema.parametrize()
    @RUN_SETTINGS
    def test_users(case: Case, world: World) -> None:
        _check(case, world)

    @domains_schema.parametrize()
    @RUN_SETTINGS
    def test_domains(case: Case, world: World) -> None:
        _check(case, world)

    @auth_schema.parametrize()
    @RUN_SETTINGS
    def test_pats(case: Case, world: World) -> None:
        _check(case, world)


def test_pat_duration_overflow_is_a_400(world: World) -> None:
    """Regression: a duration beyond timedelta's range once crashed parse_duration and answered 500."""
    response = world.session.post(
        world.base_url + "/pats",
        json={"name": "overflow", "duration": "200000000w"},
        headers={"Authorization": f"Bearer {world.access_token}"},
        timeout=10,
    )
    assert response.status_code == 400, f"{response.status_code} {response.text}"


def test_summary(request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last (file order): every selected operation ran and reached a 2xx at least once."""
    selected = {
        item.name.partition("[")[2].removesuffix("]")
        for item in request.session.items
        if item.module is request.module
        and item.name.startswith(("test_users[", "test_domains[", "test_pats["))
    }
    if not selected:
        pytest.skip("no schemathesis operation selected in this session")
    report = SUMMARY.render(WAIVERS)
    with capsys.disabled():
        print("\n" + report)
    assert set(SUMMARY.cases) == selected, report
    shallow = sorted(label for label in selected if not any(200 <= s < 300 for s in SUMMARY.statuses[label]))
    assert not shallow, f"never reached a 2xx: {shallow}\n{report}"
