"""Hybrid ranking: BM25 (FTS5) and cosine results fused by reciprocal rank, then boosted and deduplicated.

The pipeline, in order, for :func:`hybrid_search`:

1. candidates: the lexical top N (BM25 over symbol, path and body terms) and the vector top N (exact
   cosine over the embedding array), both under the same path-glob and language filters;
2. reciprocal-rank fusion: ``score = sum(weight / (k + rank))`` over the lists a chunk appears in;
3. boosts: the score is multiplied by ``1 + boost x share`` where share is the fraction of the query's
   terms found among the chunk's symbol words (then its path words);
4. dedupe: overlapping windows of one symbol (a large body split with overlap) keep their best one;
5. an optional ``rerank`` hook reorders the top M;
6. hits: path, lines, symbol, the fused score and a short snippet.

Without a query vector, or with an index that has no embeddings yet, the search is lexical only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from cube_lsp.search.index import SearchIndex, StoredChunk
from cube_lsp.search.terms import identifier_parts, query_terms, query_words
from cube_lsp.search.types import Hit

__all__ = ["RankOptions", "Reranker", "fuse", "hybrid_search", "path_glob_regex", "snippet_of"]

Reranker = Callable[[str, list[Hit]], list[Hit]]

_IDENTIFIER = re.compile(r"\w+")  # a path or symbol's identifiers; identifier_parts splits each


@dataclass(frozen=True)
class RankOptions:
    """How :func:`hybrid_search` ranks; the defaults are the shipped behaviour."""

    mode: Literal["hybrid", "lexical", "vector"] = "hybrid"  # "lexical"/"vector": one list only (benches)
    candidates: int = 80  # N: how many results each list contributes to the fusion
    rrf_k: int = 60  # the RRF constant: larger flattens the difference between ranks
    lexical_weight: float = 1.0  # weight of the BM25 list in the fusion
    vector_weight: float = 1.0  # weight of the cosine list in the fusion
    bm25_weights: tuple[float, float, float] = (8.0, 3.0, 1.0)  # BM25 column weights: symbol, path, body
    symbol_boost: float = 0.5  # x(1 + this) when every query term is a word of the symbol name
    path_boost: float = 0.2  # x(1 + this) when every query term is a word of the path
    rerank_top: int = 20  # M: how many fused hits the rerank hook sees (the rest keep their order)
    snippet_lines: int = 6  # snippet: at most this many lines of the chunk body...
    snippet_chars: int = 400  # ...and at most this many characters


def fuse(lists: Sequence[tuple[float, Sequence[int]]], k: int) -> dict[int, float]:
    """Return reciprocal-rank-fusion scores: ``sum(weight / (k + rank))``, ranks starting at 1."""
    scores: dict[int, float] = {}
    for weight, ids in lists:
        for rank, chunk_id in enumerate(ids, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (k + rank)
    return scores


@lru_cache(maxsize=128)
def path_glob_regex(glob: str) -> str:
    """Translate a gitignore-style glob into a regular expression over relative POSIX paths.

    ``*`` and ``?`` stay inside one directory, ``**`` crosses directories, ``[...]`` is a class
    (``[!...]`` negated); a glob without a slash matches a name at any depth (``*.py``); a leading ``/``
    anchors at the root; a glob naming a directory also matches everything under it (``src/``).
    """
    text = glob.strip()
    anchored = text.startswith("/") or "/" in text.rstrip("/")
    text = text.strip("/")
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("**/", i) and (i == 0 or text[i - 1] == "/"):
            out.append("(?:.*/)?")
            i += 3
        elif text.startswith("**", i) and (i == 0 or text[i - 1] == "/") and i + 2 == len(text):
            out.append(".*")
            i += 2
        elif text[i] == "*":
            out.append("[^/]*")
            i += 1
        elif text[i] == "?":
            out.append("[^/]")
            i += 1
        elif text[i] == "[" and (end := _class_end(text, i)) > 0:
            body = text[i + 1 : end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            out.append("[" + ("^/" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end + 1
        elif text[i] == "\\" and i + 1 < len(text):
            out.append(re.escape(text[i + 1]))
            i += 2
        else:
            out.append(re.escape(text[i]))
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    return prefix + "".join(out) + "(?:/.*)?$"


def _class_end(text: str, start: int) -> int:
    """Return the index of the ``]`` closing the class opened at ``start``, or -1 (then ``[`` is literal)."""
    i = start + 1
    if i < len(text) and text[i] in "!^":
        i += 1
    if i < len(text) and text[i] == "]":
        i += 1
    end = text.find("]", i)
    return end


def snippet_of(text: str, max_lines: int, max_chars: int) -> str:
    """Return the first lines of a chunk body: at most ``max_lines`` lines and ``max_chars`` characters."""
    lines = text.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    snippet = "\n".join(lines[:max_lines])
    if len(snippet) > max_chars:
        snippet = snippet[: max_chars - 1].rstrip() + "…"
    return snippet


def _share(query: frozenset[str], words: frozenset[str]) -> float:
    return len(query & words) / len(query) if query else 0.0


@lru_cache(maxsize=65536)
def _words(text: str | None) -> frozenset[str]:
    """Return the folded words of a symbol or path (cached: the same ones come back query after query)."""
    return frozenset(
        _stem(word) for token in _IDENTIFIER.findall(text or "") for word in identifier_parts(token)
    )


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """Fold a few English endings so "tokens" matches "token" in the boosts (FTS5 uses porter itself)."""
    for suffix in ("ies", "es", "s", "ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def _boost(score: float, chunk: StoredChunk, query: frozenset[str], options: RankOptions) -> float:
    score *= 1.0 + options.symbol_boost * _share(query, _words(chunk.symbol))
    return score * (1.0 + options.path_boost * _share(query, _words(chunk.path)))


def _dedupe(ranked: list[tuple[int, float]], chunks: dict[int, StoredChunk]) -> list[tuple[int, float]]:
    """Drop a hit whose lines overlap a better hit of the same path and symbol (windows of one body)."""
    kept: list[tuple[int, float]] = []
    seen: dict[tuple[str, str | None], list[tuple[int, int]]] = {}
    for chunk_id, score in ranked:
        chunk = chunks[chunk_id]
        spans = seen.setdefault((chunk.path, chunk.symbol), [])
        if any(chunk.start_line <= end and start <= chunk.end_line for start, end in spans):
            continue
        spans.append((chunk.start_line, chunk.end_line))
        kept.append((chunk_id, score))
    return kept


def hybrid_search(
    index: SearchIndex,
    query: str,
    query_vector: np.ndarray | None,
    limit: int = 10,
    path_glob: str | None = None,
    languages: Sequence[str] | None = None,
    options: RankOptions = RankOptions(),
    rerank: Reranker | None = None,
) -> list[Hit]:
    """Return up to ``limit`` hits for ``query``, best first (see the module docstring for the steps)."""
    if limit <= 0:
        return []
    path_regex = path_glob_regex(path_glob) if path_glob else None
    use_vector = query_vector is not None and options.mode != "lexical" and index.has_embeddings()
    use_lexical = options.mode != "vector"
    lexical_ids: list[int] = []

    def run_lexical() -> None:
        match = query_terms(query)
        found = index.lexical(match, options.candidates, options.bm25_weights, path_regex, languages)
        lexical_ids.extend(chunk_id for chunk_id, _ in found)

    vector_ids: list[int] = []
    if use_vector and query_vector is not None:
        # The lexical query runs on this thread while the array is scanned on the index's worker.
        alongside = run_lexical if use_lexical else None
        nearest = index.vector(query_vector, options.candidates, path_regex, languages, alongside=alongside)
        vector_ids = [chunk_id for chunk_id, _ in nearest]
    elif use_lexical:
        run_lexical()
    lists: list[tuple[float, Sequence[int]]] = []
    if use_lexical:
        lists.append((options.lexical_weight, lexical_ids))
    if use_vector:
        lists.append((options.vector_weight, vector_ids))
    fused = fuse(lists, options.rrf_k)
    if not fused:
        return []
    chunks = index.chunks(fused)
    words = frozenset(_stem(word) for word in query_words(query))
    boosted = [
        (chunk_id, _boost(score, chunks[chunk_id], words, options)) for chunk_id, score in fused.items()
    ]
    boosted.sort(key=lambda item: (-item[1], item[0]))
    ranked = _dedupe(boosted, chunks)
    hits = [_hit(chunks[chunk_id], score, options) for chunk_id, score in ranked]
    if rerank is not None and hits:
        top = options.rerank_top
        hits = list(rerank(query, hits[:top])) + hits[top:]
    return hits[:limit]


def _hit(chunk: StoredChunk, score: float, options: RankOptions) -> Hit:
    return Hit(
        path=chunk.path,
        start_line=chunk.start_line,
        end_line=chunk.end_line,
        symbol=chunk.symbol,
        score=score,
        snippet=snippet_of(chunk.text, options.snippet_lines, options.snippet_chars),
    )
