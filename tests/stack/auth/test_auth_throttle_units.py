"""The login limiter on its own, with its own clock: delays, forgetting, bounds, bursts and settings."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cube_auth_testkit import FakeClock

from cube_stack.auth import AuthSettings, AuthSettingsError
from cube_stack.auth.errors import TooManyAttemptsError
from cube_stack.auth.throttle import BackoffPolicy, BackoffTable, LoginThrottle


def _table(threshold: int = 3, cap: int = 10, forget: int = 100, entries: int = 100) -> BackoffTable:
    policy = BackoffPolicy(threshold, timedelta(seconds=1), timedelta(seconds=cap))
    return BackoffTable(policy, forget_after=timedelta(seconds=forget), max_entries=entries)


def test_policy_delays() -> None:
    policy = BackoffPolicy(3, timedelta(seconds=2), timedelta(seconds=30))
    assert [policy.delay(n).total_seconds() for n in range(1, 9)] == [0, 0, 2, 4, 8, 16, 30, 30]
    assert policy.delay(10**6) == timedelta(seconds=30)
    assert BackoffPolicy(0, timedelta(seconds=1), timedelta(seconds=1)).delay(100) == timedelta(0)


def test_a_count_is_forgotten_after_a_quiet_period() -> None:
    clock = FakeClock()
    table = _table(forget=100)
    for _ in range(3):
        table.fail("k", clock())
    assert table.wait("k", clock()) == timedelta(seconds=1)
    clock.advance(seconds=99)
    table.fail("k", clock())  # still remembered: the fourth failure doubles the delay
    assert table.wait("k", clock()) == timedelta(seconds=2)
    clock.advance(seconds=100)
    assert table.wait("k", clock()) == timedelta(0) and len(table) == 0
    table.fail("k", clock())
    assert table.wait("k", clock()) == timedelta(0)  # counting from one again


def test_a_running_block_is_not_forgotten() -> None:
    clock = FakeClock()
    table = _table(threshold=1, cap=1000, forget=5)
    for _ in range(10):
        table.fail("k", clock())
    clock.advance(seconds=100)  # quiet for longer than forget_after, but still blocked (512 s)
    assert table.wait("k", clock()) == timedelta(seconds=412)


def test_tables_are_bounded() -> None:
    clock = FakeClock()
    table = _table(entries=50)
    for n in range(1000):
        table.fail(f"k{n}", clock())
    assert len(table) == 50


def test_an_attempt_is_counted_when_admitted_so_a_burst_cannot_slip_through() -> None:
    clock = FakeClock()
    policy = BackoffPolicy(5, timedelta(seconds=1), timedelta(seconds=60))
    throttle = LoginThrottle(
        account=policy, address=policy, forget_after=timedelta(minutes=15), max_entries=10, clock=clock
    )
    for _ in range(5):  # five concurrent attempts, none finished yet
        throttle.admit(account="alice", address="10.0.0.1")
    with pytest.raises(TooManyAttemptsError) as refused:
        throttle.admit(account="alice", address="10.0.0.2")
    assert refused.value.retry_after == 1 and refused.value.code == "auth.too_many_attempts"


def test_a_success_takes_back_only_its_own_attempt_from_the_address() -> None:
    clock = FakeClock()
    account = BackoffPolicy(5, timedelta(seconds=1), timedelta(seconds=60))
    address = BackoffPolicy(3, timedelta(seconds=1), timedelta(seconds=60))
    throttle = LoginThrottle(
        account=account, address=address, forget_after=timedelta(minutes=15), max_entries=10, clock=clock
    )
    throttle.admit(account="victim1", address="a")
    throttle.admit(account="victim2", address="a")  # two failed guesses at other accounts
    throttle.admit(account="mine", address="a")
    throttle.succeeded(account="mine", address="a")  # the guesser's own valid login
    throttle.admit(account="victim3", address="a")  # the third failure: the address backs off
    with pytest.raises(TooManyAttemptsError):
        throttle.admit(account="mine", address="a")
    throttle.admit(account="mine", address="")  # an in-process caller has no address to count


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("login_backoff_account_threshold", -1),
        ("login_backoff_base", timedelta(0)),
        ("login_backoff_account_cap", timedelta(milliseconds=1)),
        ("login_backoff_forget_after", timedelta(0)),
        ("login_backoff_entries", 0),
    ],
)
def test_bad_throttle_settings_are_refused(field: str, value: object) -> None:
    with pytest.raises(AuthSettingsError) as raised:
        AuthSettings(**{field: value})  # type: ignore[arg-type]
    assert raised.value.field == field


def test_throttle_settings_from_env() -> None:
    settings = AuthSettings.from_env(
        {"CUBE_AUTH_LOGIN_BACKOFF_ACCOUNT_THRESHOLD": "3", "CUBE_AUTH_LOGIN_BACKOFF_ACCOUNT_CAP": "30s"}
    )
    assert settings.login_backoff_account_threshold == 3
    assert settings.login_backoff_account_cap == timedelta(seconds=30)
