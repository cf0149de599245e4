"""Behaviour of the chunker beyond the golden cases: sizes, merging, fallbacks and bad input."""

from __future__ import annotations

import itertools
import textwrap

import pytest

from cube_lsp.search.chunker import ChunkOptions, chunk_source


def _covered(chunks) -> set[int]:
    return {line for chunk in chunks for line in range(chunk.start_line, chunk.end_line + 1)}


def _assert_covers_every_line(text: str, chunks) -> None:
    covered = _covered(chunks)
    missing = [n for n, line in enumerate(text.split("\n"), 1) if line.strip() and n not in covered]
    assert missing == []


def _function(name: str, body_lines: int, indent: str = "") -> str:
    body = "".join(
        f"{indent}    value_{i} = compute_something_long({i}, factor=3)\n" for i in range(body_lines)
    )
    return f"{indent}def {name}(x):\n{body}{indent}    return x\n"


@pytest.mark.parametrize("text", ["", "\n\n", "   \n\t\n"])
def test_empty_or_blank_text_gives_no_chunks(text: str) -> None:
    assert chunk_source("a.py", text, "python") == []
    assert chunk_source("a.txt", text, None) == []


def test_function_header_names_file_class_and_signature() -> None:
    text = (
        "class SessionManager:\n" + _function("refresh", 30, indent="    ") + _function("close", 30, "    ")
    )
    chunks = chunk_source("pkg/auth/session.py", text, "python")
    refresh = next(chunk for chunk in chunks if chunk.symbol == "SessionManager.refresh")
    assert refresh.kind == "method"
    assert refresh.header == "path: pkg/auth/session.py\nin: class SessionManager\ndef refresh(x):"
    assert refresh.start_line == 2


def test_large_class_is_an_outline_plus_one_chunk_per_method() -> None:
    text = "class Big:\n" + _function("first", 25, "    ") + "\n" + _function("second", 25, "    ")
    chunks = chunk_source("big.py", text, "python")
    outline = next(chunk for chunk in chunks if chunk.symbol == "Big")
    assert (outline.start_line, outline.end_line) == (1, len(text.split("\n")) - 1)
    assert "compute_something_long" not in outline.text  # bodies collapsed: not indexed twice
    assert "def first(x):" in outline.text and "..." in outline.text
    assert {chunk.symbol for chunk in chunks} == {"Big", "Big.first", "Big.second"}


def test_small_class_is_one_chunk() -> None:
    text = "class Point:\n    def norm(self):\n        return (self.x ** 2 + self.y ** 2) ** 0.5\n"
    chunks = chunk_source("p.py", text, "python")
    assert [(c.symbol, c.kind, c.start_line, c.end_line) for c in chunks] == [("Point", "class", 1, 3)]


def test_large_body_is_cut_into_overlapping_windows_with_the_same_symbol_and_header() -> None:
    options = ChunkOptions(max_lines=20, max_chars=100_000, overlap_lines=5)
    text = _function("long_one", 70)
    chunks = chunk_source("m.py", text, "python", options)
    assert len(chunks) > 1
    assert {chunk.symbol for chunk in chunks} == {"long_one"}
    assert len({chunk.header for chunk in chunks}) == 1
    for before, after in itertools.pairwise(chunks):
        assert after.start_line == before.end_line - 4  # five lines shared
        assert after.end_line - after.start_line + 1 <= 20
    _assert_covers_every_line(text, chunks)


def test_long_lines_never_make_windows_crawl() -> None:
    line = "    x = '" + "a" * 400 + "'\n"  # three lines fill a window of 1500 characters
    text = "def wide():\n" + line * 60
    chunks = chunk_source("w.py", text, "python", ChunkOptions(max_chars=1500))
    assert len(chunks) <= 31  # each window moves on by at least half its lines
    _assert_covers_every_line(text, chunks)


def test_small_siblings_merge_into_one_module_chunk() -> None:
    text = textwrap.dedent(
        """\
        import os

        LIMIT = 3


        def a():
            return 1


        def b():
            return 2
        """
    )
    chunks = chunk_source("small.py", text, "python")
    assert [(c.symbol, c.kind, c.start_line, c.end_line) for c in chunks] == [(None, "module", 1, 11)]


def test_a_lone_small_definition_keeps_its_symbol() -> None:
    text = _function("big", 40) + "\n\ndef tiny():\n    return 1\n\n\n" + _function("other", 40)
    chunks = chunk_source("lone.py", text, "python")
    tiny = next(chunk for chunk in chunks if chunk.symbol == "tiny")
    assert tiny.kind == "function"


def test_nested_function_stays_in_its_parent() -> None:
    text = "def outer():\n    def inner():\n        return 1\n" + "    x = 1\n" * 10 + "    return inner\n"
    chunks = chunk_source("n.py", text, "python", ChunkOptions(min_chars=0))
    assert [chunk.symbol for chunk in chunks] == ["outer"]


def test_decorators_and_comments_right_above_belong_to_the_definition() -> None:
    text = "x = 1\n\n# Explains f.\n@cache\n@other(1)\n" + _function("f", 20)
    chunks = chunk_source("d.py", text, "python")
    f = next(chunk for chunk in chunks if chunk.symbol == "f")
    assert f.start_line == 3
    assert f.text.startswith("# Explains f.\n@cache\n@other(1)\ndef f(x):")


def test_syntax_errors_still_give_the_definitions_that_parse() -> None:
    text = _function("good", 20) + "\n\ndef broken(:\n    pass\n\n\n" + _function("also_good", 20)
    chunks = chunk_source("e.py", text, "python")
    assert {"good", "also_good"} <= {chunk.symbol for chunk in chunks}
    _assert_covers_every_line(text, chunks)


def test_crlf_line_endings_keep_line_numbers_and_text() -> None:
    text = "import os\n\n" + _function("f", 20) + "\n" + _function("g", 20)
    crlf = text.replace("\n", "\r\n")
    plain = chunk_source("c.py", text, "python")
    windows = chunk_source("c.py", crlf, "python")
    assert [(c.symbol, c.start_line, c.end_line) for c in windows] == [
        (c.symbol, c.start_line, c.end_line) for c in plain
    ]
    lines = crlf.split("\n")
    for chunk in windows:
        assert chunk.text == "\n".join(lines[chunk.start_line - 1 : chunk.end_line])


def test_tabs_and_non_ascii_text() -> None:
    body = "".join(f"\tnom_{i} = 'café ☕ {i}' + ünïcode_helper({i})\n" for i in range(30))
    text = "# Ünïcode module: ☕\n\n\ndef résumé(x):\n" + body + "\treturn x\n"
    chunks = chunk_source("u.py", text, "python")
    chunk = next(chunk for chunk in chunks if chunk.symbol == "résumé")
    assert chunk.start_line == 4
    assert chunk.header.endswith("def résumé(x):")
    _assert_covers_every_line(text, chunks)


def test_one_huge_line_neither_hangs_nor_explodes() -> None:
    text = "var a=" + ",".join(f"function f{i}(){{return {i}}}" for i in range(5000)) + ";"
    assert len(text) > 100_000
    chunks = chunk_source("min.js", text, "javascript")
    assert 1 <= len(chunks) <= 2
    assert all((chunk.start_line, chunk.end_line) == (1, 1) for chunk in chunks)


def test_unknown_language_falls_back_to_line_windows() -> None:
    text = "".join(f"line {i}\n" for i in range(1, 101))
    chunks = chunk_source("notes.txt", text, None)
    assert [(c.kind, c.symbol, c.start_line, c.end_line) for c in chunks[:3]] == [
        ("lines", None, 1, 40),
        ("lines", None, 36, 75),
        ("lines", None, 71, 100),
    ]
    assert chunks[0].header == "path: notes.txt"


def test_language_without_grammar_uses_line_windows() -> None:
    chunks = chunk_source("q.sql", "SELECT 1;\n", "sql")
    assert [(c.kind, c.start_line, c.end_line, c.text) for c in chunks] == [("lines", 1, 1, "SELECT 1;")]


def test_markdown_sections_are_named_by_heading() -> None:
    text = "# Title\n\nintro\n\n## Usage\n\n```sh\n# not a heading\n```\n"
    chunks = chunk_source("README.md", text, None)
    assert [(c.symbol, c.start_line, c.end_line) for c in chunks] == [("Title", 1, 3), ("Usage", 5, 9)]


def test_rust_impl_methods_are_qualified_by_the_type() -> None:
    body = "".join(
        f"        let v{i} = self.values.iter().map(|x| x * {i}).sum::<i64>();\n" for i in range(40)
    )
    text = "struct Foo { values: Vec<i64> }\n\nimpl<T> Foo {\n    pub fn bar(&self) -> i64 {\n"
    text += f"{body}        0\n    }}\n}}\n"
    chunks = chunk_source("lib.rs", text, "rust")
    bar = next(chunk for chunk in chunks if chunk.symbol == "Foo.bar")
    assert bar.kind == "method"
    assert "in: impl Foo" in bar.header


def test_go_methods_are_qualified_by_the_receiver() -> None:
    body = "".join(f"\ttotal += compute(s.values[{i}], {i})\n" for i in range(30))
    text = f"package x\n\nfunc (s *Server) Run(n int) int {{\n\ttotal := 0\n{body}\treturn total\n}}\n"
    chunks = chunk_source("s.go", text, "go")
    assert "Server.Run" in {chunk.symbol for chunk in chunks}


def test_cpp_out_of_class_definition_uses_the_qualified_name() -> None:
    body = "".join(f"    total += values_[{i}] * weights_[{i}];\n" for i in range(30))
    text = (
        f"#include <x>\n\nint Model::score(int n) const {{\n    int total = 0;\n{body}    return total;\n}}\n"
    )
    chunks = chunk_source("m.cpp", text, "cpp")
    assert "Model.score" in {chunk.symbol for chunk in chunks}


@pytest.mark.parametrize("options", [{"max_lines": 0}, {"max_chars": 0}, {"overlap_lines": -1}])
def test_options_out_of_range_are_refused(options: dict) -> None:
    with pytest.raises(ValueError, match="ChunkOptions"):
        ChunkOptions(**options)


def test_chunks_are_in_file_order_and_hash_stably() -> None:
    text = "import os\n\n" + _function("f", 30) + "\n" + "class C:\n" + _function("m", 30, "    ")
    first = chunk_source("o.py", text, "python")
    again = chunk_source("o.py", text, "python")
    assert [c.content_hash for c in first] == [c.content_hash for c in again]
    assert [c.start_line for c in first] == sorted(c.start_line for c in first)


def test_a_file_that_does_not_parse_at_all_gets_line_windows() -> None:
    text = "".join(f"<<<< {i} ]]]] ((((\n" for i in range(50))
    chunks = chunk_source("garbage.py", text, "python")
    assert {chunk.kind for chunk in chunks} == {"lines"}
    _assert_covers_every_line(text, chunks)
