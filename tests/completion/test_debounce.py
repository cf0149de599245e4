import pytest

from cube_lsp.completion.debounce import MAX_DELAY_S, MIN_DELAY_S, AdaptiveDebounce


def feed(debounce: AdaptiveDebounce, intervals: list[float]) -> None:
    now = 100.0
    debounce.note_keystroke("u", now)
    for interval in intervals:
        now += interval
        debounce.note_keystroke("u", now)


def test_fast_typing_waits_longer_than_the_rhythm():
    debounce = AdaptiveDebounce()
    feed(debounce, [0.1] * 10)
    assert debounce.delay("u") == pytest.approx(0.12)


def test_delay_is_clamped_and_slow_typing_gets_the_floor():
    fast = AdaptiveDebounce()
    feed(fast, [0.01] * 10)
    assert fast.delay("u") == MIN_DELAY_S
    slow = AdaptiveDebounce()
    feed(slow, [1.0] * 10)
    assert slow.delay("u") == MIN_DELAY_S
    medium = AdaptiveDebounce()
    feed(medium, [0.33] * 10)
    assert MIN_DELAY_S < medium.delay("u") <= MAX_DELAY_S


def test_pauses_are_not_rhythm_and_fixed_setting_wins():
    debounce = AdaptiveDebounce()
    feed(debounce, [0.1, 30.0, 0.1])
    assert debounce.delay("u") == pytest.approx(0.12)
    assert AdaptiveDebounce(fixed_ms=250).delay("u") == 0.25
