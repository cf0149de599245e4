"""Terms for the FTS5 lexical index: identifiers kept whole and split into their words.

Code names words by gluing them (``refreshAccessToken``, ``refresh_access_token``, ``HTTPServer2``,
``refresh-access-token``) while people search with the words apart ("refresh access token"). Each
identifier is therefore indexed twice: whole, with its separators dropped (``refreshaccesstoken``), and as
its parts (``refresh access token``), all lowercased and separated by spaces, so that FTS5's ``unicode61``
tokenizer sees exactly these terms. :func:`query_terms` applies the same expansion to a user's text and
turns it into an FTS5 MATCH expression that can never be a syntax error.
"""

from __future__ import annotations

import re
from functools import lru_cache

from cube_lsp.search.types import Chunk

__all__ = [
    "MAX_QUERY_TERMS",
    "MAX_TERM_LENGTH",
    "STOP_WORDS",
    "chunk_terms",
    "identifier_parts",
    "index_terms",
    "query_terms",
    "query_words",
    "split_words",
]

# A query of 100 KB must not become a MATCH of 20 000 terms: the first terms are the question.
MAX_QUERY_TERMS = 32
# A longer "word" in a query is pasted data, not something a person searches for.
MAX_TERM_LENGTH = 64

# Words of a question that say nothing about the code ("where do we refresh the token?"). They are
# dropped from queries only (the index keeps them, BM25's IDF already makes them cheap), and only when
# the query has other words.
STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
    ]
)

# An identifier: word characters, optionally joined by single hyphens (kebab-case: CSS, Lisp, YAML keys).
_IDENTIFIER = re.compile(r"\w+(?:-\w+)*")
# The words inside an ASCII identifier part: "HTTPServer2" -> HTTP, Server, 2; "getX" -> get, X.
_ASCII_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
_SEPARATORS = re.compile(r"[_\-]+")
# index_terms cuts identifiers in two regex passes: a space at a lower->Upper change and at the end of
# an acronym (HTTP|Server), then words are runs of letters or runs of digits (so "_", "-" and letter<->
# digit changes split too). Folding the separators and digits into the first pass ran at half the speed.
_CASE_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[^\W\d_]+|\d+")


def _split_unicode(part: str) -> list[str]:
    """Split a non-ASCII identifier part at case changes and digit boundaries (the slow, rare path)."""
    words: list[str] = []
    current = ""
    for i, ch in enumerate(part):
        if current:
            prev = current[-1]
            nxt = part[i + 1] if i + 1 < len(part) else ""
            boundary = (
                (prev.isdigit() != ch.isdigit())
                or (prev.islower() and ch.isupper())
                or (prev.isupper() and ch.isupper() and nxt.islower())
            )
            if boundary:
                words.append(current)
                current = ""
        current += ch
    if current:
        words.append(current)
    return words


def split_words(identifier: str) -> list[str]:
    """Return the lowercased words of an identifier, split on case, digits, ``_`` and ``-``."""
    words: list[str] = []
    for part in _SEPARATORS.split(identifier):
        if not part:
            continue
        pieces = _ASCII_WORD.findall(part) if part.isascii() else _split_unicode(part)
        words.extend(piece.lower() for piece in pieces)
    return words


@lru_cache(maxsize=65536)
def identifier_parts(identifier: str) -> tuple[str, ...]:
    """Return the index terms of one identifier: whole (separators dropped) first, then its words.

    An identifier that is a single word gives one term. Cached: code repeats its identifiers.
    """
    words = split_words(identifier)
    whole = "".join(words)
    if not whole:
        return ()
    if len(words) == 1:
        return (whole,)
    return (whole, *words)


def chunk_terms(chunk: Chunk) -> tuple[str, str]:
    """Return the FTS terms of a chunk's symbol and of its header and body."""
    return index_terms(chunk.symbol or ""), index_terms(f"{chunk.header}\n{chunk.text}")


def index_terms(text: str) -> str:
    """Return the FTS terms of ``text``: each compound identifier whole, then every word, lowercased.

    Words keep their frequency (a word used five times is there five times) because BM25 uses it; a
    compound's whole form is there once (counting it costs a third of the indexing time and the
    whole form's rarity, its IDF, is what ranks). The order of terms is not kept: BM25 ignores it.
    The words come from regular-expression passes over the whole text, which keep indexing at C
    speed. Case boundaries are found between ASCII letters only (``caféBar`` stays one word; ``_``
    and ``-`` still split).
    """
    tokens = _IDENTIFIER.findall(text)
    words: list[str] = []
    extend = words.extend
    for token in tokens:  # the words of the text are the words of its identifiers, in order
        extend(_token_terms(token)[1])
    wholes = [whole for whole in (_token_terms(token)[0] for token in set(tokens)) if whole]
    return " ".join(wholes + words)


@lru_cache(maxsize=262144)
def _token_terms(token: str) -> tuple[str, list[str]]:
    """Return an identifier's whole form and its words; cached, as code repeats its identifiers.

    Per identifier rather than over the whole text: measured 1.7-2.3x faster on the standard library,
    with the same terms (case boundaries never cross an identifier, and words never span two).
    """
    return _whole(token), _WORD.findall(_CASE_BOUNDARY.sub(" ", token).lower())


@lru_cache(maxsize=65536)
def _whole(token: str) -> str:
    """Return a compound identifier lowercased without separators; ``""`` for a single word.

    Single words (``token``, ``Token``, ``TOKEN``, ``_private``, ``42``) are already among the words.
    Cached: code repeats its identifiers.
    """
    core = token.strip("_-")
    if core.isalpha():
        simple = core.islower() or core.isupper() or core.istitle()
    else:
        simple = core.isdigit() or not core
    return "" if simple else _SEPARATORS.sub("", core).lower()


def query_words(query: str) -> list[str]:
    """Return the distinct terms of a user's query, in order, stop words dropped, at most MAX_QUERY_TERMS."""
    seen: dict[str, None] = {}
    for match in _IDENTIFIER.finditer(query):
        if len(match.group()) > 4 * MAX_TERM_LENGTH:
            continue
        for term in identifier_parts(match.group()):
            if len(term) <= MAX_TERM_LENGTH:
                seen.setdefault(term, None)
        if len(seen) >= 4 * MAX_QUERY_TERMS:
            break
    terms = list(seen)
    meaningful = [term for term in terms if term not in STOP_WORDS]
    return (meaningful or terms)[:MAX_QUERY_TERMS]


def query_terms(query: str) -> str:
    """Return a safe FTS5 MATCH expression for arbitrary user text: the OR of its quoted terms.

    Every term is made of word characters only and is double-quoted, so no FTS5 operator, column filter
    or bareword rule can apply. Returns ``""`` when the text has no terms; the caller then skips the
    lexical search (an empty MATCH is a syntax error).
    """
    return " OR ".join(f'"{term}"' for term in query_words(query))
