from __future__ import annotations

import pytest

from cube_lsp.completion import templates
from cube_lsp.completion.templates import (
    FALLBACK_TEMPLATE,
    format_snippets_as_comments,
    render_prompt,
    template_for_model,
)
from cube_lsp.completion.types import Snippet
from cube_lsp.settings import Template


def test_public_api() -> None:
    assert sorted(templates.__all__) == sorted(
        [
            "FALLBACK_TEMPLATE",
            "TEMPLATES",
            "FimTemplate",
            "SnippetStyle",
            "format_snippets_as_comments",
            "render_prompt",
            "template_for_model",
        ]
    )


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("qwen2.5-coder:1.5b", "qwen2.5-coder"),
        ("qwen2.5-coder:7b-base-q4_K_M", "qwen2.5-coder"),
        ("hf.co/bartowski/Qwen2.5-Coder-7B-GGUF", "qwen2.5-coder"),
        ("hf.co/Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF:Q8_0", "qwen2.5-coder"),
        ("qwen3-coder:30b", "qwen2.5-coder"),
        ("starcoder2:3b", "starcoder2"),
        ("bigcode/StarCoder2-15B", "starcoder2"),
        ("codellama:7b-code", "codellama"),
        ("CodeLlama-13B", "codellama"),
        ("deepseek-coder:6.7b-base", "deepseek-coder"),
        ("deepseek-coder-v2:16b-lite-base-q4_0", "deepseek-coder"),
        ("codegemma:2b-code", "codegemma"),
        ("codestral:22b", "codestral"),
        ("mistralai/Codestral-22B-v0.1", "codestral"),
        ("starcoder:1b", "starcoder"),
        ("codeqwen:7b-code", "starcoder"),
        ("stable-code:3b-code", "starcoder"),
        ("granite-code:3b", "starcoder"),
        ("llama3.2:3b", "starcoder"),
        ("", "starcoder"),
    ],
)
def test_model_names_match_by_lowercase_substring(model: str, name: str) -> None:
    assert template_for_model(model).name == name


def test_unknown_model_gets_the_fallback() -> None:
    assert template_for_model("some-new-model") is FALLBACK_TEMPLATE


def test_user_template_overrides_the_table() -> None:
    override = Template(prefix="<A>", suffix="<B>", middle="<C>", stop=("<END>",), order="spm")
    template = template_for_model("qwen2.5-coder:1.5b", override)
    assert (template.name, template.prefix, template.suffix, template.middle) == (
        "custom",
        "<A>",
        "<B>",
        "<C>",
    )
    assert template.stop == ("<END>",)
    assert render_prompt(template, "pre", "suf") == "<B>suf<A>pre<C>"


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("qwen2.5-coder", "<|fim_prefix|>pre<|fim_suffix|>suf<|fim_middle|>"),
        ("starcoder2", "<fim_prefix>pre<fim_suffix>suf<fim_middle>"),
        ("codellama", "<PRE> pre <SUF>suf <MID>"),
        ("deepseek-coder", "<｜fim▁begin｜>pre<｜fim▁hole｜>suf<｜fim▁end｜>"),
        ("codegemma", "<|fim_prefix|>pre<|fim_suffix|>suf<|fim_middle|>"),
        ("codestral", "[SUFFIX]suf[PREFIX]pre"),
        ("unknown", "<fim_prefix>pre<fim_suffix>suf<fim_middle>"),
    ],
)
def test_render_without_snippets(model: str, expected: str) -> None:
    assert render_prompt(template_for_model(model), "pre", "suf") == expected


@pytest.mark.parametrize(
    ("model", "stops"),
    [
        ("qwen2.5-coder", {"<|endoftext|>", "<|file_sep|>", "<|fim_prefix|>"}),
        ("starcoder2", {"<file_sep>", "<|endoftext|>"}),
        ("codellama", {"<EOT>"}),
        ("deepseek-coder", {"<｜end▁of▁sentence｜>"}),
        ("codegemma", {"<|file_separator|>"}),
        ("codestral", {"[PREFIX]", "[SUFFIX]"}),
    ],
)
def test_templates_carry_stop_tokens(model: str, stops: set[str]) -> None:
    assert stops <= set(template_for_model(model).stop)


SNIPPETS = [
    Snippet("lib/a.py", "def a():\n    ...", 0.2, "recent"),
    Snippet("lib/b.py", "B = 1\n", 0.9, "definition"),
]


def test_qwen_repo_level_format() -> None:
    prompt = render_prompt(
        template_for_model("qwen2.5-coder"), "x = ", "\n", SNIPPETS, "main.py", repo_name="proj"
    )
    assert prompt == (
        "<|repo_name|>proj\n"
        "<|file_sep|>lib/a.py\ndef a():\n    ...\n"
        "<|file_sep|>lib/b.py\nB = 1\n"
        "<|file_sep|>main.py\n"
        "<|fim_prefix|>x = <|fim_suffix|>\n<|fim_middle|>"
    )


def test_starcoder2_repo_format() -> None:
    prompt = render_prompt(
        template_for_model("starcoder2"), "x = ", "", SNIPPETS[1:], "main.py", repo_name="proj"
    )
    assert (
        prompt == "<repo_name>proj<file_sep>lib/b.py\nB = 1\n<file_sep><fim_prefix>main.py\n"
        "x = <fim_suffix><fim_middle>"
    )


def test_comment_style_templates_put_snippets_in_the_prefix() -> None:
    prompt = render_prompt(template_for_model("codellama"), "x = ", "", SNIPPETS[1:], "main.go")
    assert prompt == "<PRE> // Path: lib/b.py\n// B = 1\nx =  <SUF> <MID>"
    spm = render_prompt(template_for_model("codestral"), "x = ", "y", SNIPPETS[1:], "main.py")
    assert spm == "[SUFFIX]y[PREFIX]# Path: lib/b.py\n# B = 1\nx = "


def test_format_snippets_as_comments() -> None:
    assert format_snippets_as_comments([], "python") == ""
    text = format_snippets_as_comments(SNIPPETS, "python")
    assert text == "# Path: lib/a.py\n# def a():\n#     ...\n#\n# Path: lib/b.py\n# B = 1\n"
    assert format_snippets_as_comments([Snippet("u.go", "a\n\nb", 1, "recent")], "go") == (
        "// Path: u.go\n// a\n//\n// b\n"
    )
    assert format_snippets_as_comments([Snippet("q.sql", "select 1", 1, "recent")], "sql").startswith(
        "-- Path: q.sql"
    )
