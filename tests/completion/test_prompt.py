from __future__ import annotations

import dataclasses

from cube_lsp.completion import prompt as prompt_module
from cube_lsp.completion.prompt import PromptInput, build_fim_prompt, build_fim_request, select_snippets
from cube_lsp.completion.types import Snippet
from cube_lsp.settings import CompletionSettings, Template

CURSOR = "║"
DOCUMENT = "import math\n\n\ndef area(r):\n    return ║\n\n\nprint(area(1))\n"
SETTINGS = CompletionSettings()


def split(document: str) -> tuple[str, int]:
    assert document.count(CURSOR) == 1
    return document.replace(CURSOR, ""), document.index(CURSOR)


def test_public_api() -> None:
    assert sorted(prompt_module.__all__) == [
        "BuiltPrompt",
        "PromptInput",
        "build_fim_prompt",
        "build_fim_request",
        "select_snippets",
    ]


def test_native_mode_sends_prefix_and_suffix_separately() -> None:
    text, offset = split(DOCUMENT)
    request = build_fim_request(
        PromptInput(text, offset, "python", "geo.py", "qwen2.5-coder:1.5b", [], False, True), SETTINGS
    )
    assert request.prompt == text[:offset]
    assert request.suffix == text[offset:]
    assert request.raw is False
    assert request.model == "qwen2.5-coder:1.5b"
    assert (request.max_tokens, request.temperature) == (SETTINGS.max_tokens, SETTINGS.temperature)
    assert "\n" not in request.stop


def test_raw_mode_renders_the_template_and_sends_no_suffix() -> None:
    text, offset = split(DOCUMENT)
    request = build_fim_request(
        PromptInput(text, offset, "python", "geo.py", "codellama:7b", [], True, True), SETTINGS
    )
    assert request.prompt == f"<PRE> {text[:offset]} <SUF>{text[offset:]} <MID>"
    assert request.suffix == ""
    assert request.raw is True
    assert "<EOT>" in request.stop


def test_single_line_adds_a_newline_stop() -> None:
    text, offset = split(DOCUMENT)
    request = build_fim_request(
        PromptInput(text, offset, "python", "geo.py", "codestral", [], True, False), SETTINGS
    )
    assert request.stop[-1] == "\n"
    assert request.stop[:-1] == ("[PREFIX]", "[SUFFIX]", "[MIDDLE]", "</s>")


def test_settings_template_and_generation_options_are_used() -> None:
    settings = dataclasses.replace(
        SETTINGS, template=Template("<a>", "<b>", "<c>", ("<z>",)), max_tokens=7, temperature=0.0
    )
    text, offset = split("x = ║\n")
    request = build_fim_request(
        PromptInput(text, offset, "python", "x.py", "qwen2.5-coder", [], True, True), settings
    )
    assert request.prompt == "<a>x = <b>\n<c>"
    assert request.stop == ("<z>",)
    assert (request.max_tokens, request.temperature) == (7, 0.0)


def test_built_prompt_reports_the_ranges_used() -> None:
    body = "".join(f"line_{i} = {i}\n" for i in range(2000))
    text = body + "x = \n" + body
    offset = len(body) + 4
    built = build_fim_prompt(
        PromptInput(text, offset, "python", "x.py", "qwen2.5-coder", [], False, True), SETTINGS
    )
    assert built.request.prompt == text[built.prefix_start : offset]
    assert built.request.suffix == text[offset : built.suffix_end]
    assert 0 < built.prefix_start < offset < built.suffix_end < len(text)
    assert built.template.name == "qwen2.5-coder"
    assert built.snippets == ()


def test_snippets_are_ranked_deduplicated_and_rendered_best_last() -> None:
    text, offset = split(DOCUMENT)
    offered = [
        Snippet("b.py", "B = 2", 0.9, "recent"),
        Snippet("a.py", "A = 1", 0.5, "definition"),
        Snippet("b.py", "B = 2", 0.8, "recent"),  # same text again
        Snippet("geo.py", "area = None", 1.0, "recent"),  # the current file
        Snippet("c.py", "   ", 0.7, "recent"),  # blank
    ]
    built = build_fim_prompt(
        PromptInput(text, offset, "python", "geo.py", "qwen2.5-coder", offered, False, True), SETTINGS
    )
    assert [s.path for s in built.snippets] == ["a.py", "b.py"]
    assert built.request.prompt.startswith("# Path: a.py\n# A = 1\n#\n# Path: b.py\n# B = 2\nimport math")


def test_cross_file_context_off_drops_snippets() -> None:
    text, offset = split(DOCUMENT)
    settings = dataclasses.replace(SETTINGS, cross_file_context=False)
    snippet = Snippet("a.py", "A = 1", 0.5, "recent")
    built = build_fim_prompt(
        PromptInput(text, offset, "python", "geo.py", "qwen2.5-coder", [snippet], True, True), settings
    )
    assert built.snippets == ()
    assert "<|file_sep|>" not in built.request.prompt


def test_select_snippets_keeps_within_budget_and_skips_what_does_not_fit() -> None:
    big = Snippet("big.py", "x" * 400, 0.9, "recent")
    small = Snippet("small.py", "y = 1", 0.1, "recent")
    assert select_snippets([big, small], 20, "python") == [small]
    assert select_snippets([big, small], 0, "python") == []
    assert select_snippets([small, big], 1000, "python") == [small, big]


def test_the_whole_prompt_stays_within_the_budget() -> None:
    body = "".join(f"value_{i} = compute(value_{i - 1})\n" for i in range(5000))
    offered = [Snippet(f"s{i}.py", "z = 1\n" * 40, i / 10, "recent") for i in range(10)]
    settings = dataclasses.replace(SETTINGS, max_prompt_tokens=512)
    source = PromptInput(body, len(body) // 2, "python", "m.py", "qwen2.5-coder", offered, True, True)
    request = build_fim_request(source, settings)
    assert len(request.prompt) / 3.5 <= 512
