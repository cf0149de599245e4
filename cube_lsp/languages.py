"""Languages cube-lsp understands: LSP languageIds, file extensions, comment syntax, tree-sitter parsers.

Grammars come from the per-language ``tree-sitter-*`` wheels, which carry compiled grammars (no
download at run time). Parsers are created lazily and kept per language; tree-sitter parsers are not
thread-safe, so :func:`parse` must be called from one thread at a time (the server's event loop).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath

import tree_sitter


@dataclass(frozen=True)
class LanguageInfo:
    """What we know of one language."""

    name: str  # canonical name, e.g. "typescript"
    module: str | None  # python module holding the grammar
    function: str  # function of that module returning the grammar pointer
    line_comment: str  # prefix of a line comment
    extensions: tuple[str, ...]


_LANGUAGES: dict[str, LanguageInfo] = {
    info.name: info
    for info in (
        LanguageInfo("python", "tree_sitter_python", "language", "#", (".py", ".pyi")),
        LanguageInfo(
            "javascript", "tree_sitter_javascript", "language", "//", (".js", ".mjs", ".cjs", ".jsx")
        ),
        LanguageInfo(
            "typescript", "tree_sitter_typescript", "language_typescript", "//", (".ts", ".mts", ".cts")
        ),
        LanguageInfo("tsx", "tree_sitter_typescript", "language_tsx", "//", (".tsx",)),
        LanguageInfo("go", "tree_sitter_go", "language", "//", (".go",)),
        LanguageInfo("rust", "tree_sitter_rust", "language", "//", (".rs",)),
        LanguageInfo("java", "tree_sitter_java", "language", "//", (".java",)),
        LanguageInfo("c", "tree_sitter_c", "language", "//", (".c", ".h")),
        LanguageInfo(
            "cpp", "tree_sitter_cpp", "language", "//", (".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx")
        ),
        LanguageInfo("csharp", "tree_sitter_c_sharp", "language", "//", (".cs",)),
        LanguageInfo("ruby", "tree_sitter_ruby", "language", "#", (".rb", ".rake", ".gemspec")),
        LanguageInfo("php", "tree_sitter_php", "language_php", "//", (".php", ".phtml")),
        LanguageInfo("kotlin", "tree_sitter_kotlin", "language", "//", (".kt", ".kts")),
        LanguageInfo("shellscript", None, "", "#", (".sh", ".bash")),
        LanguageInfo("lua", None, "", "--", (".lua",)),
        LanguageInfo("sql", None, "", "--", (".sql",)),
    )
}

# LSP languageIds that name a language differently from our canonical name.
_ALIASES = {
    "javascriptreact": "javascript",
    "typescriptreact": "tsx",
    "py": "python",
    "js": "javascript",
    "ts": "typescript",
    "golang": "go",
    "c++": "cpp",
    "c#": "csharp",
    "cs": "csharp",
    "rb": "ruby",
    "kt": "kotlin",
    "sh": "shellscript",
    "bash": "shellscript",
}

_BY_EXTENSION = {ext: info for info in _LANGUAGES.values() for ext in info.extensions}


def language_info(language_id: str) -> LanguageInfo | None:
    """Return what we know of an LSP languageId (or canonical name); None for unknown languages."""
    key = language_id.lower()
    return _LANGUAGES.get(_ALIASES.get(key, key))


def language_for_path(path: str) -> LanguageInfo | None:
    """Guess the language of a file from its extension."""
    return _BY_EXTENSION.get(PurePosixPath(path).suffix.lower())


def line_comment(language_id: str) -> str:
    """Return the line-comment prefix of a language; "//" when unknown."""
    info = language_info(language_id)
    return info.line_comment if info else "//"


# Characters that open a one-line string, per language (Rust, C, Go and Java use ' for chars and lifetimes).
_STRING_QUOTES = {
    "python": "\"'",
    "javascript": "\"'`",
    "typescript": "\"'`",
    "tsx": "\"'`",
    "ruby": "\"'",
    "php": "\"'",
}


def scan_line_end(line: str, language_id: str) -> tuple[str, bool]:
    """Return (the quote of a string ``line`` ends inside or "", whether it ends in a line comment)."""
    info = language_info(language_id)
    quotes = _STRING_QUOTES.get(info.name if info is not None else "", '"')
    comment = line_comment(language_id)
    quote = ""
    escaped = False
    for index, char in enumerate(line):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in quotes:
            quote = char
        elif line.startswith(comment, index):
            return "", True
    return quote, False


@cache
def grammar(name: str) -> tree_sitter.Language | None:
    """Return the tree-sitter grammar of a canonical language name; None when its wheel is missing.

    A ``Language`` is immutable, so unlike a parser it may be shared between threads.
    """
    info = _LANGUAGES.get(name)
    if info is None or info.module is None:
        return None
    try:
        module = importlib.import_module(info.module)
    except ImportError:
        return None
    return tree_sitter.Language(getattr(module, info.function)())


@cache
def _parser(name: str) -> tree_sitter.Parser | None:
    language = grammar(name)
    return tree_sitter.Parser(language) if language is not None else None


def has_grammar(language_id: str) -> bool:
    """Return whether a tree-sitter grammar is available for the language."""
    info = language_info(language_id)
    return info is not None and _parser(info.name) is not None


def parse(language_id: str, source: bytes) -> tree_sitter.Tree | None:
    """Parse ``source`` (UTF-8 bytes); None when no grammar is available for the language."""
    info = language_info(language_id)
    if info is None:
        return None
    parser = _parser(info.name)
    return parser.parse(source) if parser is not None else None
