from __future__ import annotations

from cube_lsp.completion.postprocess import PostprocessConfig
from cube_lsp.completion.postprocess.limit_scope_by_indentation import limit_scope_by_indentation
from cube_lsp.completion.types import Candidate

from ._markers import context_at

CONFIG = PostprocessConfig()


def run(marked: str, text: str, language: str = "python", config: PostprocessConfig = CONFIG) -> str | None:
    result = limit_scope_by_indentation(Candidate(text), context_at(marked, language, True), config)
    return None if result is None else result.text


def test_single_line_completions_pass_untouched() -> None:
    candidate = Candidate("return 1")
    context = context_at("def f():\n    ║\n", multiline=True)
    assert limit_scope_by_indentation(candidate, context, CONFIG) is candidate


def test_stops_at_a_dedent_below_the_cursor_block() -> None:
    assert run("def f():\n    x = 1\n    ║\n", "y = 2\n    z = 3\ndef g():\n    pass") == "y = 2\n    z = 3"


def test_block_opened_on_the_cursor_line_must_be_indented() -> None:
    assert run("def f():║\n", "\n    return 1\nprint(f())") == "\n    return 1"


def test_block_opened_on_the_line_above() -> None:
    assert run("if ok:\n    ║\n", "go()\nstop()") == "go()"


def test_continuation_keywords_keep_the_block() -> None:
    assert run("if ok:║\n", "\n    go()\nelse:\n    stop()\nafter()") == "\n    go()\nelse:\n    stop()"


def test_column_zero_after_a_finished_block_starts_a_new_scope() -> None:
    assert run("def f():\n    return 1\n║", "\ndef g():\n    return 2") == "\ndef g():\n    return 2"


def test_mid_block_blank_line_at_column_zero_keeps_the_block_scope() -> None:
    assert run("def f():\n    x = 1\n║\n    return x\n", "    y = 2\ndef g():") == "    y = 2"


def test_keeps_the_closing_brace_at_end_of_file() -> None:
    assert run("function f() {║", "\n  run();\n}\nf();", "javascript") == "\n  run();\n}"


def test_drops_the_closing_brace_already_below() -> None:
    assert run("function f() {║\n}\n", "\n  run();\n}\nf();", "javascript") == "\n  run();"


def test_closing_brace_outside_the_block_is_cut_when_code_follows() -> None:
    marked = "function f() {\n  a();\n  ║\n  b();\n}\n"
    assert run(marked, "c();\n}\nfunction g() {}", "javascript") == "c();"


def test_else_branch_continues_the_block() -> None:
    text = "\n  a();\n} else {\n  b();\n}\nc();"
    assert run("if (x) {║", text, "javascript") == "\n  a();\n} else {\n  b();\n}"


def test_tabs_are_measured_with_tab_size() -> None:
    marked = "func f() {\n\tx := 1\n\t║\n}\n"
    assert run(marked, "y := 2\n    z := 3\n}", "go") == "y := 2\n    z := 3"
    assert run(marked, "y := 2\n  z := 3", "go") == "y := 2"
