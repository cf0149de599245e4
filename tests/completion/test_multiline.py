from __future__ import annotations

import time

import pytest

from cube_lsp.completion.multiline import decide_multiline, opens_block


def decide(marked: str, language: str, setting: str = "auto") -> bool:
    assert marked.count("║") == 1
    return decide_multiline(marked.replace("║", ""), marked.index("║"), language, setting)


@pytest.mark.parametrize(
    ("marked", "language"),
    [
        ("def f(x):\n    ║\n", "python"),  # empty body after def ...:
        ("def f(x):║\n", "python"),  # end of the def line
        ("class A:\n    def f(self):\n        ║", "python"),  # nested body at end of file
        ("def f():\n    x = 1\n    ║\n    return x\n", "python"),  # blank line between statements
        ("function f() {║}\n", "javascript"),  # empty function body
        ("function f() {\n  ║\n}\n", "typescript"),
        ("const f = (a: number) =>║\n", "typescript"),  # arrow function body
        ("const App = () => {\n  ║\n};\n", "tsx"),
        ("func main() {\n\t║\n}\n", "go"),
        ("fn main() {║\n}\n", "rust"),
        ("match x {\n    1 =>║\n}\n", "rust"),
        ("class A {\n    void f() {\n        ║\n    }\n}\n", "java"),
        ("switch (x) {\ncase 1:║\n}\n", "c"),
        ("int main(void) {\n    ║\n}\n", "c"),
        ("int main(void) {\r\n    ║\r\n}\r\n", "c"),  # CRLF
        ("", "python"),  # empty file
    ],
)
def test_auto_is_multi_line_at_the_start_of_a_block(marked: str, language: str) -> None:
    marked = marked or "║"
    assert decide(marked, language) is True


@pytest.mark.parametrize(
    ("marked", "language"),
    [
        ("x = foo(║)\n", "python"),  # mid-line, text after the cursor
        ("x = ║\n", "python"),  # mid-expression
        ("    return ║\n", "python"),
        ("# explain ║\n", "python"),  # line comment
        ('def f():\n    """Docstring ║\n    more."""\n', "python"),  # docstring
        ('x = "abc ║\n', "python"),  # unterminated string on the line
        ("const s = `hello ║`;\n", "typescript"),  # template string
        ("// a comment {║\n", "javascript"),  # comment that ends with a block opener
        ("/* block\n   comment ║\n*/\n", "c"),
        ('let s = "héllo ║";\n', "rust"),  # unicode before the cursor in a string
        ("foo(\n    ║\n)\n", "python"),  # inside an argument list
        ("if (a &&\n    ║\n", "java"),
        ("x := compute(1, ║2)\n", "go"),
        ("int x = 1;║\n", "c"),  # end of a finished statement
    ],
)
def test_auto_is_single_line_mid_line_in_comments_strings_and_expressions(marked: str, language: str) -> None:
    assert decide(marked, language) is False


def test_settings_force_the_answer() -> None:
    assert decide("x = foo(║)\n", "python", "always") is True
    assert decide("def f():\n    ║\n", "python", "never") is False


def test_unknown_language_uses_the_text_heuristics() -> None:
    assert decide("def f\n  ║\nend\n", "ruby") is True
    assert decide("x = foo(║)\n", "ruby") is False
    assert decide("# note ║\n", "ruby") is False


def test_offset_out_of_range_is_clamped() -> None:
    assert decide_multiline("def f():\n    ", 10_000, "python", "auto") is True


def test_opens_block() -> None:
    assert opens_block("    if x > 0:", "python")
    assert opens_block(") -> int:", "python")
    assert not opens_block('d = {"a":', "python")
    assert opens_block("fn main() {", "rust")
    assert opens_block("items.map((x) =>", "typescript")
    assert opens_block("default:", "c")
    assert not opens_block("x = y;", "c")


def test_parses_only_a_window_around_the_cursor() -> None:
    body = "".join(f"def func_{i}(x):\n    y = x + {i}\n    return y\n\n" for i in range(2_500))
    text = body + "def main():\n    \n" + body
    offset = len(body) + len("def main():\n    ")
    assert len(text.splitlines()) >= 20_000
    assert decide_multiline(text, offset, "python", "auto") is True
    best = float("inf")
    for _ in range(20):
        start = time.perf_counter()
        decide_multiline(text, offset, "python", "auto")
        best = min(best, time.perf_counter() - start)
    assert best < 0.005


@pytest.mark.parametrize(
    ("marked", "language", "expected"),
    [
        ("/**\n * Adds.\n */\n║\n", "javascript", True),  # after a doc comment
        ("const f = () =>\n  ║\n", "typescript", True),
        ("x = (a +\n     ║\n", "python", False),
        ("total = a and \\\n    ║\n", "python", False),
        ("let v = [\n    1,\n    ║\n", "rust", False),
    ],
)
def test_blank_line_after_an_unfinished_line(marked: str, language: str, expected: bool) -> None:
    assert decide(marked, language) is expected
