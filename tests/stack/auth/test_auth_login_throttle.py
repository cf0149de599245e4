"""Password guessing backs off per account and per client address (issue 8, finding 4).

The attack against a real uvicorn on 127.0.0.1: many wrong passwords for one user, then the right one.
Time is the service's injected clock, so the windows are crossed without sleeping. A second loopback
address (127.0.0.2) is a real second client address. The limiter itself: test_auth_throttle_units.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cube_auth_testkit import ADMIN, FakeClock, assert_error, bearer, serve, user_body

from cube_stack.auth import AuthSettings, create_auth_app

ISSUE = "/users/tokens/issue"


def _settings(tmp_path: Path, **overrides: object) -> AuthSettings:
    values: dict[str, object] = {
        "data_dir": tmp_path,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8,
        "sqlite_synchronous": "off",
        "admin_username": ADMIN["username"],
        "admin_email": ADMIN["email"],
        "admin_password": ADMIN["password"],
    }
    values.update(overrides)
    return AuthSettings(**values)  # type: ignore[arg-type]


class Clients:
    """Clients of one real server from two loopback addresses."""

    def __init__(self, url: str) -> None:
        self.first = httpx.AsyncClient(base_url=url)
        self.second = httpx.AsyncClient(
            base_url=url, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        )

    async def aclose(self) -> None:
        await self.first.aclose()
        await self.second.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def clients(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Clients]:
    async with serve(create_auth_app(_settings(tmp_path), clock=clock)) as url:
        both = Clients(url)
        try:
            admin = (await both.first.post(ISSUE, json=ADMIN_LOGIN)).json()["access_token"]
            for name in ("alice", "bob"):
                created = await both.first.post("/users", json=user_body(name), headers=bearer(admin))
                assert created.status_code == 201, created.text
            yield both
        finally:
            await both.aclose()


ADMIN_LOGIN = {"username": ADMIN["username"], "password": ADMIN["password"]}
ALICE = {"username": "alice", "password": "alice-password"}
ALICE_WRONG = {"username": "alice", "password": "not-alices-password"}


def _retry_after(response: httpx.Response) -> int:
    assert_error(response, 429, "auth.too_many_attempts")
    return int(response.headers["Retry-After"])


async def test_guessing_one_password_backs_off(clients: Clients, clock: FakeClock) -> None:
    client = clients.first
    statuses = [(await client.post(ISSUE, json=ALICE_WRONG)).status_code for _ in range(300)]

    assert statuses[:5] == [401] * 5  # the threshold: five wrong guesses are checked
    assert set(statuses[5:]) == {429}  # then every guess is refused, without checking the password
    refused = await client.post(ISSUE, json=ALICE)  # even the right password, during the window
    assert _retry_after(refused) == 1
    # another user is unaffected, from the same address
    assert (await client.post(ISSUE, json={"username": "bob", "password": "bob-password"})).status_code == 201

    clock.advance(seconds=1)  # the window is over: the right password works at once
    assert (await client.post(ISSUE, json=ALICE)).status_code == 201
    # and the success reset alice's count: five more wrong guesses are checked again
    assert [(await client.post(ISSUE, json=ALICE_WRONG)).status_code for _ in range(5)] == [401] * 5


async def test_the_delay_doubles_up_to_a_short_cap(clients: Clients, clock: FakeClock) -> None:
    client = clients.first
    for _ in range(5):
        await client.post(ISSUE, json=ALICE_WRONG)
    delays = []
    for _ in range(10):  # one more wrong guess each time the window has passed
        delay = _retry_after(await client.post(ISSUE, json=ALICE_WRONG))
        delays.append(delay)
        clock.advance(seconds=delay)
        assert (await client.post(ISSUE, json=ALICE_WRONG)).status_code == 401
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]  # never longer than a minute
    clock.advance(seconds=60)
    assert (await client.post(ISSUE, json=ALICE)).status_code == 201


async def test_unknown_usernames_back_off_like_real_ones(clients: Clients) -> None:
    client = clients.first
    nobody = {"username": "nobody", "password": "whatever-it-is"}
    statuses = [(await client.post(ISSUE, json=nobody)).status_code for _ in range(6)]
    assert statuses == [401] * 5 + [429]  # the 429 does not tell which accounts exist


async def test_one_address_guessing_many_accounts_backs_off(clients: Clients, clock: FakeClock) -> None:
    # 20 wrong guesses spread over many (unknown) accounts, none of them reaching its own threshold
    for n in range(20):
        response = await clients.first.post(ISSUE, json={"username": f"user{n}", "password": "guess-1234"})
        assert response.status_code == 401
    # the address is now refused, even for an account it never guessed, and with the right password
    assert _retry_after(await clients.first.post(ISSUE, json=ALICE)) == 1
    # another address is not: alice can still log in from there
    assert (await clients.second.post(ISSUE, json=ALICE)).status_code == 201
    clock.advance(seconds=1)
    assert (await clients.first.post(ISSUE, json=ALICE)).status_code == 201


async def test_logins_from_an_address_that_succeed_do_not_count(clients: Clients) -> None:
    for _ in range(30):
        assert (await clients.first.post(ISSUE, json=ALICE)).status_code == 201


async def test_throttle_can_be_turned_off(tmp_path: Path) -> None:
    settings = _settings(tmp_path, login_backoff_account_threshold=0, login_backoff_address_threshold=0)
    async with serve(create_auth_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        wrong = {"username": ADMIN["username"], "password": "wrong-password"}
        assert {(await client.post(ISSUE, json=wrong)).status_code for _ in range(30)} == {401}
