"""Hybrid ranking on a tiny hand-built index with hand-made vectors."""

import re

import numpy as np
import pytest

from cube_lsp.search.index import SearchIndex
from cube_lsp.search.rank import RankOptions, fuse, hybrid_search, path_glob_regex, snippet_of
from cube_lsp.search.types import Chunk, SourceFile

DIM = 4
NO_BOOST = RankOptions(symbol_boost=0.0, path_boost=0.0)


def v(*xs):
    return np.array(xs, dtype=np.float32)


@pytest.fixture
def index(tmp_path):
    with SearchIndex(tmp_path / "idx", "hand-made", DIM) as idx:
        yield idx


def add(index, path, symbol, body, vector=None, start=1, language="python"):
    lines = body.count("\n")
    chunk = Chunk(path, symbol, "function", start, start + lines, "", body)
    existing = [c for c in _chunks_of(index, path)]
    index.replace_file(SourceFile(path, 1, 1, language), path, [*existing, chunk])
    if vector is not None:
        index.store_embeddings([chunk.content_hash], vector[None])
    return chunk


def _chunks_of(index, path):
    rows = index._conn.execute("SELECT id FROM chunks WHERE path = ? ORDER BY id", (path,)).fetchall()
    stored = index.chunks([r for (r,) in rows])
    return [
        Chunk(c.path, c.symbol, c.kind, c.start_line, c.end_line, c.header, c.text)
        for c in (stored[r] for (r,) in rows)
    ]


def test_rrf_adds_weighted_reciprocal_ranks():
    scores = fuse([(1.0, [10, 20, 30]), (0.5, [30, 10])], k=60)
    assert scores[10] == pytest.approx(1 / 61 + 0.5 / 62)
    assert scores[20] == pytest.approx(1 / 62)
    assert scores[30] == pytest.approx(1 / 63 + 0.5 / 61)


@pytest.fixture
def split_evidence(index):
    """A query whose best answer is second by words and second by meaning, first by neither."""
    add(index, "cache.py", "tokenRefreshCache", "token refresh token refresh cache", v(0, 0, 1, 0))
    add(index, "auth.py", "renew", "def renew():\n    # refresh the token\n    ...", v(0.8, 0.6, 0, 0))
    add(index, "login.py", "sign_in", "def sign_in(user): ...", v(1, 0.05, 0, 0))
    add(index, "misc.py", "unrelated", "def unrelated(): pass", v(0, 0, 0, 1))
    return "token refresh", v(1, 0, 0, 0)


def test_hybrid_finds_what_each_list_alone_misses(index, split_evidence):
    query, vector = split_evidence
    two = {"candidates": 2, "symbol_boost": 0.0, "path_boost": 0.0}
    lexical = hybrid_search(index, query, vector, 1, options=RankOptions(mode="lexical", **two))
    semantic = hybrid_search(index, query, vector, 1, options=RankOptions(mode="vector", **two))
    hybrid = hybrid_search(index, query, vector, 3, options=RankOptions(**two))
    assert lexical[0].symbol == "tokenRefreshCache"
    assert semantic[0].symbol == "sign_in"
    assert hybrid[0].symbol == "renew"
    assert hybrid[0].score == pytest.approx(2 / 62)
    assert {hit.symbol for hit in hybrid[1:]} == {"tokenRefreshCache", "sign_in"}
    assert all(hit.score == pytest.approx(1 / 61) for hit in hybrid[1:])


def test_without_a_query_vector_the_search_is_lexical(index, split_evidence):
    query, _ = split_evidence
    hits = hybrid_search(index, query, None, 10, options=NO_BOOST)
    assert [hit.symbol for hit in hits] == ["tokenRefreshCache", "renew"]


def test_an_index_without_embeddings_is_searched_lexically(index):
    add(index, "a.py", "parse", "def parse(): pass")
    hits = hybrid_search(index, "parse", v(1, 0, 0, 0), 5)
    assert [hit.symbol for hit in hits] == ["parse"]
    assert hybrid_search(index, "parse", v(1, 0, 0, 0), 5, options=RankOptions(mode="vector")) == []


def test_filters_by_path_glob_and_language(index):
    same = v(1, 0, 0, 0)
    add(index, "src/pkg/a.py", "parse_a", "def parse_a(): parse", same)
    add(index, "lib/b.py", "parse_b", "def parse_b(): parse", same)
    add(index, "src/c.go", "parse_c", "func parse_c() { parse }", same, language="go")
    symbols = lambda hits: sorted(hit.symbol for hit in hits)  # noqa: E731
    assert symbols(hybrid_search(index, "parse", same, 10, path_glob="src/**/*.py")) == ["parse_a"]
    assert symbols(hybrid_search(index, "parse", same, 10, path_glob="*.py")) == ["parse_a", "parse_b"]
    assert symbols(hybrid_search(index, "parse", same, 10, languages=["go"])) == ["parse_c"]
    assert symbols(hybrid_search(index, "parse", None, 10, path_glob="src/")) == ["parse_a", "parse_c"]
    assert hybrid_search(index, "parse", same, 10, path_glob="*.rs") == []


def test_symbol_name_boost(index):
    same = v(0, 1, 0, 0)
    add(index, "a.py", "unrelated", "x = 1", same)
    add(index, "b.py", "parseConfig", "y = 2", same)
    options = RankOptions(mode="vector", symbol_boost=0.5, path_boost=0.0)
    hits = hybrid_search(index, "parse the config", same, 5, options=options)
    assert hits[0].symbol == "parseConfig"
    assert hits[0].score == pytest.approx(1.5 / 62)  # second by id, boosted past the first
    assert hits[1].score == pytest.approx(1 / 61)


def test_path_boost(index):
    same = v(0, 0, 1, 0)
    add(index, "auth/other.py", "f", "x = 1", same)
    add(index, "auth/sessions.py", "g", "y = 2", same)
    options = RankOptions(mode="vector", symbol_boost=0.0, path_boost=0.2)
    hits = hybrid_search(index, "session", same, 5, options=options)
    assert [hit.path for hit in hits] == ["auth/sessions.py", "auth/other.py"]
    assert hits[0].score == pytest.approx(1.2 / 62)


def test_overlapping_windows_of_one_symbol_are_deduplicated(index):
    body = "\n".join(f"    step_{i}(payload)" for i in range(30))
    add(index, "big.py", "Big.run", body, v(1, 0, 0, 0), start=1)
    add(index, "big.py", "Big.run", body + "\n    done()", v(1, 0.1, 0, 0), start=25)
    add(index, "big.py", "Big.run", body + "\n    later()", v(1, 0.2, 0, 0), start=100)
    hits = hybrid_search(index, "payload step", v(1, 0, 0, 0), 10)
    assert [hit.start_line for hit in hits] == [1, 100]


def test_rerank_hook_reorders_the_top_m(index):
    for i in range(5):
        add(index, f"f{i}.py", f"handler{i}", f"def handler{i}(): handle()", v(1, i / 10, 0, 0))
    seen = []

    def reverse(query, hits):
        seen.append((query, len(hits)))
        return list(reversed(hits))

    plain = hybrid_search(index, "handle", v(1, 0, 0, 0), 5, options=NO_BOOST)
    reranked = hybrid_search(
        index, "handle", v(1, 0, 0, 0), 5, options=RankOptions(rerank_top=3), rerank=reverse
    )
    assert seen == [("handle", 3)]
    assert [h.symbol for h in reranked[:3]] == [h.symbol for h in reversed(plain[:3])]
    assert [h.symbol for h in reranked[3:]] == [h.symbol for h in plain[3:]]


def test_hits_carry_a_bounded_snippet(index):
    body = "\n\n" + "\n".join("x" * 300 for _ in range(20))
    add(index, "long.py", "long", body, v(1, 0, 0, 0))
    hit = hybrid_search(index, "long", None, 1)[0]
    assert len(hit.snippet) <= RankOptions().snippet_chars
    assert not hit.snippet.startswith("\n")


def test_snippet_takes_the_first_lines():
    assert snippet_of("\n  \na\nb\nc", 2, 100) == "a\nb"
    assert snippet_of("abcdef", 5, 4) == "abc…"


@pytest.mark.parametrize("query", ["", "   ", '"', "NEAR(", "x" * 100_000, "🚀 " * 10_000, "a AND (b OR"])
def test_hostile_queries_answer(index, query):
    add(index, "a.py", "f", "def f(): pass", v(1, 0, 0, 0))
    hits = hybrid_search(index, query, v(1, 0, 0, 0), 5)
    assert [hit.symbol for hit in hits] == ["f"]  # the vector list still answers
    assert hybrid_search(index, query, None, 5) == []


@pytest.mark.parametrize(
    ("glob", "matches", "misses"),
    [
        ("*.py", ["a.py", "src/deep/b.py"], ["a.pyc", "py/a.txt"]),
        ("src/**/*.py", ["src/a.py", "src/x/y/b.py"], ["lib/src/a.py", "src/a.go"]),
        ("/src/*.py", ["src/a.py"], ["src/x/a.py", "lib/src/a.py"]),
        ("src/", ["src/a.py", "src/x/b.go"], ["srcs/a.py", "lib/a.py"]),
        ("**/test_*.py", ["test_a.py", "tests/test_b.py"], ["tests/a_test.py"]),
        ("src/**", ["src/a", "src/b/c"], ["lib/src/a"]),
        ("file?.[ch]", ["file1.c", "x/fileA.h"], ["file10.c", "file1.o"]),
        ("[!a]*.md", ["b.md", "doc/c.md"], ["a.md"]),
        ("a+b(1).txt", ["a+b(1).txt"], ["aab1.txt"]),
    ],
)
def test_path_glob_regex(glob, matches, misses):
    pattern = re.compile(path_glob_regex(glob))
    assert all(pattern.match(path) for path in matches), [p for p in matches if not pattern.match(p)]
    assert not any(pattern.match(path) for path in misses), [p for p in misses if pattern.match(p)]
