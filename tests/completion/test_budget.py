from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from cube_lsp.completion import budget
from cube_lsp.completion.budget import CharRatioCounter, build_prompt_context, cut_to_tokens

CURSOR = "║"


def split(document: str) -> tuple[str, int]:
    assert document.count(CURSOR) == 1
    return document.replace(CURSOR, ""), document.index(CURSOR)


@dataclass
class LineCounter:
    """One token per character, counting calls (to check the walk stays near the cursor)."""

    calls: int = 0
    seen: list[str] = field(default_factory=list)

    def count(self, text: str) -> int:
        self.calls += 1
        return len(text)


def lines(name: str, n: int) -> str:
    return "".join(f"{name}_{i:03d} = {i}\n" for i in range(n))  # 14 chars + newline each


def test_public_api() -> None:
    assert sorted(budget.__all__) == sorted(
        [
            "DEFAULT_CHARS_PER_TOKEN",
            "CharRatioCounter",
            "PromptContext",
            "TokenCounter",
            "build_prompt_context",
            "cut_to_tokens",
        ]
    )


def test_char_ratio_counter_rounds_up() -> None:
    counter = CharRatioCounter(3.5)
    assert counter.count("") == 0
    assert counter.count("abc") == 1
    assert counter.count("abcd") == 2
    assert counter.count("a" * 35) == 10
    assert CharRatioCounter(4).count("a" * 9) == 3


def test_everything_fits_in_a_small_document() -> None:
    text, offset = split("def f(x):\n    return ║x\n\nprint(f(1))\n")
    context = build_prompt_context(text, offset)
    assert context.prefix == "def f(x):\n    return "
    assert context.suffix == "x\n\nprint(f(1))\n"
    assert (context.prefix_start, context.suffix_end) == (0, len(text))


def test_prefix_and_suffix_are_pruned_by_whole_lines_nearest_the_cursor() -> None:
    text, offset = split(lines("a", 50) + "b = ║c\n" + lines("d", 50))
    counter = LineCounter()
    # 100 tokens: suffix <= 20, prefix 30 + unused suffix.
    context = build_prompt_context(text, offset, max_prompt_tokens=100, counter=counter)
    assert context.suffix == "c\nd_000 = 0"  # 1 + 10 tokens; a second line (11) would exceed 20
    assert context.prefix == "a_047 = 47\na_048 = 48\na_049 = 49\nb = "  # 4 + 3 * 11 <= 30 + 9 < 4 + 4 * 11
    assert text[context.prefix_start : offset] == context.prefix
    assert text[offset : context.suffix_end] == context.suffix
    assert context.prefix_start == 0 or text[context.prefix_start - 1] == "\n"


def test_unused_suffix_budget_flows_to_the_prefix() -> None:
    before = lines("a", 50) + "b = "
    with_suffix = build_prompt_context(
        before + lines("d", 50), len(before), max_prompt_tokens=100, counter=LineCounter()
    )
    without_suffix = build_prompt_context(before, len(before), max_prompt_tokens=100, counter=LineCounter())
    assert without_suffix.suffix == ""
    assert without_suffix.prefix_tokens > with_suffix.prefix_tokens
    assert without_suffix.prefix.count("\n") == 4  # 4 + 4 * 11 <= 30 + 20


def test_snippets_get_what_remains() -> None:
    text, offset = split(lines("a", 50) + "b = ║c\n" + lines("d", 50))
    context = build_prompt_context(
        text, offset, max_prompt_tokens=100, reserved_tokens=10, counter=LineCounter()
    )
    assert context.snippet_tokens == 90 - context.prefix_tokens - context.suffix_tokens
    assert context.prefix_tokens + context.suffix_tokens <= 90 * 0.5


def test_percentages_are_configurable() -> None:
    text, offset = split(lines("a", 50) + "b = ║c\n" + lines("d", 50))
    context = build_prompt_context(
        text,
        offset,
        max_prompt_tokens=100,
        prefix_percentage=0.6,
        max_suffix_percentage=0.1,
        counter=LineCounter(),
    )
    assert context.suffix == "c"  # the next line (11 tokens) does not fit in 10 - 1
    assert context.prefix_tokens <= 60 + 9
    assert context.prefix.count("\n") == 5  # 4 + 5 * 11 <= 69 < 4 + 6 * 11


def test_cursor_line_is_kept_even_when_no_whole_line_fits() -> None:
    text, offset = split(lines("a", 5) + "value = compute(║arg)\n" + lines("d", 5))
    # suffix: 8 tokens, "arg)" uses 4; prefix: 12 + 4 = 16, exactly the partial line.
    context = build_prompt_context(text, offset, max_prompt_tokens=40, counter=LineCounter())
    assert context.prefix == "value = compute("
    assert context.suffix == "arg)"


def test_cursor_line_longer_than_its_budget_is_cut_keeping_the_cursor_side() -> None:
    text = "x" * 500 + "y" * 500
    context = build_prompt_context(text, 500, max_prompt_tokens=100, counter=LineCounter())
    assert context.suffix == "y" * 20
    assert context.prefix == "x" * 30  # the suffix used its whole budget
    assert context.prefix_start == 470


def test_zero_suffix_percentage_sends_no_suffix() -> None:
    text, offset = split("a = 1\nb = ║2\nc = 3\n")
    context = build_prompt_context(text, offset, max_suffix_percentage=0.0)
    assert context.suffix == ""
    assert context.prefix == "a = 1\nb = "


def test_offset_is_clamped() -> None:
    assert build_prompt_context("abc", 10).prefix == "abc"
    assert build_prompt_context("abc", -3).suffix == "abc"


def test_cursor_at_line_start_and_crlf() -> None:
    text, offset = split("a = 1\r\n║b = 2\r\n")
    context = build_prompt_context(text, offset)
    assert context.prefix == "a = 1\r\n"
    assert context.suffix == "b = 2\r\n"


def test_walk_reads_only_as_far_as_the_budget() -> None:
    text = lines("a", 50_000)
    offset = len(text) // 2
    counter = LineCounter()
    context = build_prompt_context(text, offset, max_prompt_tokens=1024, counter=counter)
    # At 15 tokens a line, the default split reads about 50 lines, not 50 000.
    assert counter.calls < 80
    assert 0 < context.prefix_tokens <= 1024


@pytest.mark.parametrize("keep_end", [False, True])
def test_cut_to_tokens(keep_end: bool) -> None:
    counter = CharRatioCounter(4)
    text = "".join(str(i % 10) for i in range(100))
    cut = cut_to_tokens(text, 5, counter, keep_end=keep_end)
    assert len(cut) == 20
    assert text.endswith(cut) if keep_end else text.startswith(cut)
    assert cut_to_tokens(text, 0, counter) == ""
    assert cut_to_tokens("short", 5, counter) == "short"
