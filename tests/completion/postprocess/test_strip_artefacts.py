from __future__ import annotations

import pytest

from cube_lsp.completion.postprocess import PostprocessConfig
from cube_lsp.completion.postprocess.strip_artefacts import strip_artefacts
from cube_lsp.completion.types import Candidate

from ._markers import context_at

CONFIG = PostprocessConfig()
CONTEXT = context_at("x = ║\n")


def run(text: str, config: PostprocessConfig = CONFIG, language: str = "python") -> str | None:
    result = strip_artefacts(Candidate(text), context_at("x = ║\n", language), config)
    return None if result is None else result.text


@pytest.mark.parametrize(
    "token",
    [
        "<|endoftext|>",
        "<|fim_pad|>",
        "<|file_sep|>",
        "<fim_middle>",
        "<｜end▁of▁sentence｜>",
        "<EOT>",
        "</s>",
    ],
)
def test_cuts_at_each_default_stop_token(token: str) -> None:
    assert run(f"foo(1){token}bar(2)") == "foo(1)"


def test_cuts_at_the_earliest_token_whatever_the_config_order() -> None:
    config = PostprocessConfig(stop_tokens=("<B>", "<A>"))
    assert run("one<A>two<B>three", config) == "one"


def test_custom_stop_tokens_replace_the_defaults() -> None:
    config = PostprocessConfig(stop_tokens=("\n\n",))
    assert run("a = 1\n\nb = 2<|endoftext|>", config) == "a = 1"


def test_removes_think_blocks_anywhere() -> None:
    assert run("<think>plan</think>foo()<think>more</think> + 1") == "foo() + 1"


def test_drops_an_unterminated_think_block() -> None:
    assert run("foo()<think>still going") is None


def test_removes_a_think_block_whose_opening_was_in_the_prompt() -> None:
    assert run("the user wants a call</think>foo()") == "foo()"


def test_strips_an_opening_and_closing_fence() -> None:
    assert run("```python\nfoo()\nbar()\n```\nSome prose.") == "foo()\nbar()"


def test_keeps_fences_in_markdown_files() -> None:
    assert run("```js\nx\n```", language="markdown") == "```js\nx\n```"


def test_fences_inside_code_lines_are_not_touched() -> None:
    assert run('s = "```"') == 's = "```"'


def test_returns_the_same_object_when_nothing_changes() -> None:
    candidate = Candidate("foo()")
    assert strip_artefacts(candidate, CONTEXT, CONFIG) is candidate
