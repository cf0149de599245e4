"""Identifier splitting for the FTS index, and MATCH expressions that survive any user text."""

import sqlite3

import pytest

from cube_lsp.search.terms import MAX_QUERY_TERMS, identifier_parts, index_terms, query_terms, query_words


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("refreshAccessToken", "refreshaccesstoken refresh access token"),
        ("RefreshAccessToken", "refreshaccesstoken refresh access token"),
        ("refresh_access_token", "refreshaccesstoken refresh access token"),
        ("REFRESH_ACCESS_TOKEN", "refreshaccesstoken refresh access token"),
        ("refresh-access-token", "refreshaccesstoken refresh access token"),
        ("HTTPServer2", "httpserver2 http server 2"),
        ("parseHTTPResponse", "parsehttpresponse parse http response"),
        ("getX", "getx get x"),
        ("utf8Decode", "utf8decode utf 8 decode"),
        ("__init__", "init"),
        ("token", "token"),
        ("naïveBayes", "naïvebayes naïve bayes"),
        ("Straße_größe", "straßegröße straße größe"),
        ("a.b(c)", "a b c"),
        ("", ""),
        ("  ;;; ", ""),
    ],
)
def test_index_terms_split_and_keep_whole(text, terms):
    assert index_terms(text) == terms


def test_index_terms_keep_term_frequency():
    assert sorted(index_terms("token = token + getToken()").split()) == [
        "get",
        "gettoken",
        "token",
        "token",
        "token",
    ]


@pytest.mark.parametrize(
    "query",
    [
        'say "hello',
        "a AND OR NOT",
        "NEAR(a b, 3)",
        "col:value ^start *",
        "(((",
        "'; DROP TABLE chunks; --",
        "emoji 🚀 and 中文 mixed",
        "\x00\x01\ufffd",
        "-",
        "x" * 100_000,
        "word " * 25_000,
        " ".join(f"w{i}" for i in range(20_000)),
    ],
)
def test_query_terms_never_an_fts5_syntax_error(query):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE t USING fts5(a, tokenize = 'porter unicode61 remove_diacritics 2')")
    db.execute("INSERT INTO t VALUES ('say hello word w1 emoji')")
    match = query_terms(query)
    if match:
        db.execute("SELECT rowid FROM t WHERE t MATCH ?", (match,)).fetchall()
    assert match.count(" OR ") < MAX_QUERY_TERMS


def test_query_terms_is_an_or_of_quoted_split_terms():
    assert query_terms("where do we refreshAccessToken?") == (
        '"refreshaccesstoken" OR "refresh" OR "access" OR "token"'
    )


def test_query_drops_stop_words_unless_nothing_else_is_left():
    assert query_words("where is the parser") == ["parser"]
    assert query_words("the of") == ["the", "of"]


def test_query_terms_empty_for_text_without_words():
    assert query_terms("?!., ;") == ""


@pytest.mark.parametrize(
    "identifier",
    [
        "refreshAccessToken",
        "HTTPServer2",
        "x86_64",
        "parse_HTTPResponse",
        "kebab-case-name",
        "getX",
        "utf8Decode",
    ],
)
def test_index_terms_agree_with_the_query_side_split(identifier):
    # index_terms splits with whole-text regexes for speed; queries split one identifier at a time.
    assert sorted(index_terms(identifier).split()) == sorted(identifier_parts(identifier))
