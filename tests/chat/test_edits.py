"""Unit tests for cube_lsp.chat.edits: extraction, re-indentation and edit edge cases."""

from __future__ import annotations

import pytest

from cube_lsp.chat import edits
from cube_lsp.chat.edits import EditResult, TextEdit, apply_answer, canonical_language, extract_code, reindent


def apply(document: str, result: EditResult) -> str:
    assert result.edit is not None, result.reason
    edit = result.edit
    return document[: edit.start] + edit.new_text + document[edit.end :]


def test_public_names() -> None:
    assert edits.__all__ == [
        "EditResult",
        "ExtractedCode",
        "TextEdit",
        "apply_answer",
        "canonical_language",
        "extract_code",
        "place_code",
        "reindent",
    ]


# --- extract_code ---------------------------------------------------------------------------------------


def test_tilde_fence() -> None:
    code = extract_code("Try:\n~~~python\nx = 1\n~~~\n", "python")
    assert code is not None
    assert (code.text, code.language, code.complete, code.blocks) == ("x = 1", "python", True, 1)


def test_four_backticks_hold_three_backtick_lines() -> None:
    answer = "````md\nUse:\n```\nx\n```\n````"
    code = extract_code(answer, "markdown")
    assert code is not None and code.text == "Use:\n```\nx\n```"


def test_tilde_fence_does_not_close_on_backticks() -> None:
    code = extract_code("~~~\na\n```\nb\n~~~", None)
    assert code is not None and code.text == "a\n```\nb"


def test_closing_fence_may_be_longer() -> None:
    code = extract_code("```go\nx := 1\n`````", "go")
    assert code is not None and code.complete and code.text == "x := 1"


@pytest.mark.parametrize(
    ("tag", "language_id"),
    [
        ("py", "python"),
        ("python3", "python"),
        ("ts", "typescript"),
        ("tsx", "typescriptreact"),
        ("typescript", "typescriptreact"),
        ("golang", "go"),
        ("rs", "rust"),
        ("Rust", "rust"),
    ],
)
def test_language_aliases_win_over_untagged(tag: str, language_id: str) -> None:
    answer = f"```\nuntagged and longer than the other block\n```\n```{tag}\nmine\n```"
    code = extract_code(answer, language_id)
    assert code is not None and code.text == "mine" and code.blocks == 2


def test_canonical_language() -> None:
    assert canonical_language("PY") == "python"
    assert canonical_language("typescriptreact") == "typescript"
    assert canonical_language("") is None
    assert canonical_language("c") == "c"


def test_other_language_blocks_are_never_applied() -> None:
    assert extract_code("```bash\nls -la\n```\n```console\n$ ls\n```", "python") is None


def test_javascript_block_accepted_for_typescript_after_untagged() -> None:
    code = extract_code("```js\nconst a = 1;\n```", "typescript")
    assert code is not None and code.language == "js"
    assert extract_code("```js\nconst a = 1;\n```", "python") is None


def test_longest_candidate_wins() -> None:
    code = extract_code("```py\na\n```\ntext\n```py\nlonger = 1\n```", "python")
    assert code is not None and code.text == "longer = 1"


def test_without_target_language_output_tags_are_skipped() -> None:
    code = extract_code("```text\nsome long output here\n```\n```ruby\nputs 1\n```", None)
    assert code is not None and code.language == "ruby"


def test_info_string_extras_are_ignored() -> None:
    code = extract_code('```python title="a.py"\nx = 1\n```', "python")
    assert code is not None and code.language == "python"
    code = extract_code("```rust:src/lib.rs\nfn a() {}\n```", "rust")
    assert code is not None and code.language == "rust"


def test_unterminated_block_drops_a_dangling_partial_fence() -> None:
    code = extract_code("```go\nfunc a() {}\n``", "go")
    assert code is not None and not code.complete and code.text == "func a() {}"


def test_unterminated_block_is_chosen_even_when_shorter() -> None:
    code = extract_code("```py\nx = compute_everything_here()\n```\nFull:\n```py\ndef f(", "python")
    assert code is not None and not code.complete and code.text == "def f("


def test_crlf_answer() -> None:
    code = extract_code("Here:\r\n```py\r\na = 1\r\nb = 2\r\n```\r\n", "python")
    assert code is not None and code.text == "a = 1\nb = 2"


def test_indented_fence_strips_its_indentation() -> None:
    code = extract_code("1. Change it:\n   ```py\n   if a:\n       b()\n   ```", "python")
    assert code is not None and code.text == "if a:\n    b()"


@pytest.mark.parametrize(
    "answer",
    [
        "return x + 1",
        "# Keep it short.\nreturn x",
        '"""Return the sum.\n\nThis is documentation, not prose to refuse.\n"""',
        "/* This comment is a full sentence. */\nlet a = 1;",
        "// Returns the value.\nfn v() -> u8 { 1 }",
        "from foo import bar as baz",
        "None",
    ],
)
def test_unfenced_code_is_accepted(answer: str) -> None:
    code = extract_code(answer, "python")
    assert code is not None and code.blocks == 0 and code.text == answer


@pytest.mark.parametrize(
    "answer",
    [
        "Sure! Here you go.\nreturn x",
        "Done.",
        "The code looks correct and needs no change",
        "This renames `foo` to `bar`.",
        "",
        "  \n",
    ],
)
def test_unfenced_prose_is_refused(answer: str) -> None:
    assert extract_code(answer, "python") is None


# --- reindent -------------------------------------------------------------------------------------------


def test_reindent_removes_common_indent_and_applies_target() -> None:
    assert reindent("    a\n        b\n", "  ") == "  a\n      b\n"


def test_reindent_keeps_blank_lines_empty() -> None:
    assert reindent("a\n   \n  b", "\t\t") == "\t\ta\n\n\t\t  b"


def test_reindent_spaces_to_tabs() -> None:
    assert reindent("if x {\n    y()\n        z()\n}", "\t") == "\tif x {\n\t\ty()\n\t\t\tz()\n\t}"


def test_reindent_tabs_to_spaces() -> None:
    assert reindent("\tif a:\n\t\tb()", "    ") == "    if a:\n        b()"


def test_reindent_explicit_tabs_with_empty_target() -> None:
    assert reindent("a {\n    b\n}", "", use_tabs=True) == "a {\n\tb\n}"


def test_reindent_remainder_columns_stay_spaces_with_tabs() -> None:
    assert reindent("a\n      b", "\t", tab_size=4) == "\ta\n\t\t  b"


def test_reindent_tab_size() -> None:
    assert reindent("a\n  b", "", tab_size=2, use_tabs=True) == "a\n\tb"


def test_reindent_keeps_crlf() -> None:
    assert reindent("  a\r\n    b\r\n", "") == "a\r\n  b\r\n"


def test_reindent_empty() -> None:
    assert reindent("", "    ") == ""


# --- apply_answer ---------------------------------------------------------------------------------------


def test_edit_result_needs_exactly_one() -> None:
    with pytest.raises(ValueError):
        EditResult(None, None)
    with pytest.raises(ValueError):
        EditResult(TextEdit(0, 0, ""), "why")


def test_smallest_edit_offsets() -> None:
    document = "a = 1\nb = 2\nc = 3\n"
    start, end = document.index("b"), document.index("c")
    result = apply_answer(document, start, end, "```py\nb = 20\n```", "python")
    assert result.edit == TextEdit(start + 5, start + 5, "0")
    assert apply(document, result) == "a = 1\nb = 20\nc = 3\n"


def test_refusal_codes() -> None:
    document = "x = 1\n"
    assert apply_answer(document, 0, 6, "", "python").code == "chat.empty_answer"
    assert apply_answer(document, 0, 6, "Looks fine to me.", "python").code == "chat.no_code"
    assert apply_answer(document, 0, 6, "```py\nx = 2", "python").code == "chat.truncated"
    assert apply_answer(document, 0, 6, "```py\nx = 1\n```", "python").code == "chat.no_change"
    assert apply_answer(document, 0, 6, "```py\n\n```", "python").code == "chat.empty_code"
    assert apply_answer(document, 3, 99, "x", "python").code == "chat.bad_range"


def test_selection_without_trailing_newline_gets_none() -> None:
    document = "a = 1\nb = 2"
    result = apply_answer(document, 6, len(document), "```py\nb = 3\n\n```", "python")
    assert apply(document, result) == "a = 1\nb = 3"


def test_lone_closing_brace_that_matches_the_next_line_is_kept() -> None:
    document = "fn main() {\n    if a {\n        b();\n    }\n}\n"
    start = document.index("    if")
    end = document.index("}\n", document.index("b();")) + 2
    answer = "```rust\nif a {\n    c();\n}\n```"
    assert apply(document, apply_answer(document, start, end, answer, "rust")) == (
        "fn main() {\n    if a {\n        c();\n    }\n}\n"
    )


def test_crlf_document_with_offsets_after_crlf() -> None:
    document = "x = 1\r\ny = 2\r\nz = 3\r\n"
    start, end = document.index("y"), document.index("z")
    result = apply_answer(document, start, end, "```py\ny = 200\ny2 = 3\n```", "python")
    assert apply(document, result) == "x = 1\r\ny = 200\r\ny2 = 3\r\nz = 3\r\n"


def test_go_document_without_indentation_defaults_to_tabs() -> None:
    document = "package a\n\nfunc f() {}\n"
    start = document.index("func")
    answer = "```go\nfunc f() {\n    g()\n}\n```"
    assert apply(document, apply_answer(document, start, len(document), answer, "go")).endswith(
        "func f() {\n\tg()\n}\n"
    )


def test_selection_starting_inside_leading_whitespace() -> None:
    document = "def f():\n    return 1\n"
    start = document.index("return")
    result = apply_answer(document, start, len(document), "```py\nreturn 2\n```", "python")
    assert apply(document, result) == "def f():\n    return 2\n"


def test_place_code_takes_the_code_as_it_is() -> None:
    """A chat panel's Apply: no fence to find, the same re-indenting and the same refusals."""
    document = "class A:\n    def f(self):\n        return 1\n\n\nx = 2\n"
    start, end = document.index("    def f"), document.index("\n\n\nx") + 1
    placed = edits.place_code(document, start, end, "def f(self):\n    return 2", "python")
    edit = placed.edit
    assert edit is not None and edit.new_text == "2"  # the smallest edit
    after = document[: edit.start] + edit.new_text + document[edit.end :]
    assert after == document.replace("return 1", "return 2")
    rewrite = "class A:\n    def f(self):\n        return 3\n\n\nx = 2"
    refused = edits.place_code(document, start, end, rewrite, "python")
    assert refused.edit is None and "outside" in (refused.reason or "")
    empty = edits.place_code(document, start, end, "  \n", "python")
    assert empty.reason == "the code in the answer is empty"


def test_code_that_does_not_parse_is_never_applied() -> None:
    """A garbled answer (what the random-weights demo model writes) must not replace a function."""
    document = "import math\n\n\ndef area(r):\n    return math.pi * r * r\n"
    start = document.index("def area")
    garbled = "`QQQQ3PY{IcQQQjn7A\n\ncQQQQ{}\"ZR{IcQQ3PYn7A\n"
    refused = edits.apply_answer(document, start, len(document), garbled, "python")
    assert refused.edit is None and refused.code == "chat.syntax_error"
    broken = "def area(r):\n    return math.pi * r *\n"
    assert edits.place_code(document, start, len(document), broken, "python").code == "chat.syntax_error"


def test_a_document_that_was_already_broken_is_not_judged_by_its_syntax() -> None:
    """Mid-edit files often do not parse; the check refuses only errors the answer brings in."""
    document = "def half(x:\n    return x / 2\n\n\ndef area(r):\n    return 3 * r * r\n"
    start = document.index("def area")
    fixed = "def area(r):\n    return math.pi * r * r\n"
    assert edits.place_code(document, start, len(document), fixed, "python").edit is not None
