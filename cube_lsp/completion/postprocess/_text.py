"""Text helpers shared by the filters: bounded views of the document, lines, indentation, brackets, tokens.

Every view of the document is bounded by :class:`PostprocessConfig` windows, so the cost of a filter does
not grow with the file; views have LF line endings whatever the document uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cube_lsp.completion.postprocess.config import PostprocessConfig
from cube_lsp.completion.types import CursorContext
from cube_lsp.languages import language_info, scan_line_end

OPENERS = "([{"
CLOSERS = ")]}"
MATCHING = {")": "(", "]": "[", "}": "{"}
WORD = re.compile(r"\w")
TOKEN = re.compile(r"\w+|[^\w\s]")


def to_lf(text: str) -> str:
    """Return ``text`` with CRLF line endings turned into LF."""
    return text.replace("\r\n", "\n") if "\r" in text else text


def line_prefix(context: CursorContext) -> str:
    """Return the cursor line before the cursor (bounded)."""
    start = context.prefix.rfind("\n") + 1
    return context.prefix[max(start, len(context.prefix) - 2000) :]


def line_suffix(context: CursorContext) -> str:
    """Return the cursor line after the cursor, without its line ending (bounded)."""
    head = context.suffix[:2000]
    end = head.find("\n")
    return (head if end < 0 else head[:end]).removesuffix("\r")


def suffix_window(context: CursorContext, config: PostprocessConfig) -> str:
    """Return the head of the suffix: at most the configured lines and characters, LF line endings."""
    head = context.suffix[: config.suffix_window_chars]
    lines = head.split("\n", config.suffix_window_lines + 1)
    if len(lines) > config.suffix_window_lines + 1:
        head = "\n".join(lines[: config.suffix_window_lines + 1])
    return to_lf(head)


def prefix_window(context: CursorContext, config: PostprocessConfig) -> str:
    """Return the tail of the prefix: at most the configured lines and characters, LF line endings."""
    tail = context.prefix[-config.prefix_window_chars :]
    lines = tail.rsplit("\n", config.prefix_window_lines + 1)
    if len(lines) > config.prefix_window_lines + 1:
        tail = "\n".join(lines[1:])
    return to_lf(tail)


def lines_below(context: CursorContext, config: PostprocessConfig) -> list[str]:
    """Return the lines below the cursor line (within the suffix window)."""
    return suffix_window(context, config).split("\n")[1:]


def nonblank_lines_below(context: CursorContext, config: PostprocessConfig) -> list[str]:
    """Return the non-blank lines below the cursor line (within the suffix window)."""
    return [line for line in lines_below(context, config) if line.strip()]


def previous_nonblank_line(context: CursorContext, config: PostprocessConfig) -> str | None:
    """Return the nearest non-blank line above the cursor line, or None at the top of the window."""
    lines = prefix_window(context, config).split("\n")[:-1]
    for line in reversed(lines):
        if line.strip():
            return line
    return None


def uses_crlf(context: CursorContext) -> bool:
    """Return whether the document around the cursor uses CRLF line endings."""
    head = context.suffix[:4000]
    if "\n" in head:
        return "\r\n" in head
    return "\r\n" in context.prefix[-4000:]


def leading_whitespace(line: str) -> str:
    """Return the indentation of ``line``."""
    return line[: len(line) - len(line.lstrip(" \t"))]


def indent_width(line: str, tab_size: int) -> int:
    """Return the indentation of ``line`` in columns, tabs advancing to the next tab stop."""
    width = 0
    for char in line:
        if char == " ":
            width += 1
        elif char == "\t":
            width += tab_size - width % tab_size
        else:
            break
    return width


def squash(text: str) -> str:
    """Return ``text`` without any whitespace, for whitespace-insensitive comparison."""
    return "".join(text.split())


def has_word(text: str) -> bool:
    """Return whether ``text`` holds a letter, digit or underscore."""
    return WORD.search(text) is not None


def is_closing_line(line: str) -> bool:
    """Return whether a line starts by closing a block (``}``, ``)``, ``]``, ``end``)."""
    stripped = line.strip()
    return stripped[:1] in CLOSERS or re.match(r"(end|fi|done|esac)\b", stripped) is not None


def tokens(text: str) -> list[re.Match[str]]:
    """Return the word and punctuation tokens of ``text`` (whitespace is not a token)."""
    return list(TOKEN.finditer(text))


# Strings and comments hide brackets from the bracket scanner. One pattern per language family.
_C_LIKE = (
    r"//[^\n]*|/\*[\s\S]*?(?:\*/|\Z)"
    r'|"(?:\\.|[^"\\\n])*"?'
    r"|'(?:\\.|[^'\\\n])'"  # char literals only: Rust lifetimes ('a) stay plain text
    r"|`[^`]*`?"
)
_SCRIPT = (
    r"//[^\n]*|/\*[\s\S]*?(?:\*/|\Z)" r'|"(?:\\.|[^"\\\n])*"?' r"|'(?:\\.|[^'\\\n])*'?" r"|`(?:\\.|[^`\\])*`?"
)
_HASH = (
    r"#[^\n]*"
    r'|"""[\s\S]*?(?:"""|\Z)|\'\'\'[\s\S]*?(?:\'\'\'|\Z)'
    r'|"(?:\\.|[^"\\\n])*"?'
    r"|'(?:\\.|[^'\\\n])*'?"
)
_BRACKET = r"|(?P<b>[()\[\]{}])"
_PATTERNS = {
    "c_like": re.compile(_C_LIKE + _BRACKET),
    "script": re.compile(_SCRIPT + _BRACKET),
    "hash": re.compile(_HASH + _BRACKET),
}
_FAMILY = {
    "python": "hash",
    "ruby": "hash",
    "shellscript": "hash",
    "javascript": "script",
    "typescript": "script",
}
_FAMILY |= {"tsx": "script"}


def open_quote(line: str, language_id: str) -> str:
    """Return the quote of the string ``line`` ends inside ("" when it ends outside strings)."""
    return scan_line_end(line, language_id)[0]


@dataclass(frozen=True)
class Brackets:
    """Brackets of a text that do not pair up inside it, as (index, character) in text order."""

    unmatched_closers: tuple[tuple[int, str], ...]
    unclosed_openers: tuple[tuple[int, str], ...]


def scan_brackets(text: str, language_id: str) -> Brackets:
    """Pair the brackets of ``text`` (skipping strings and comments) and return the unpaired ones."""
    info = language_info(language_id)
    pattern = _PATTERNS[_FAMILY.get(info.name if info else "", "c_like")]
    stack: list[tuple[int, str]] = []
    closers: list[tuple[int, str]] = []
    for match in pattern.finditer(text):
        char = match.group("b")
        if char is None:
            continue
        if char in OPENERS:
            stack.append((match.start(), char))
        elif stack and stack[-1][1] == MATCHING[char]:
            stack.pop()
        else:
            closers.append((match.start(), char))
    return Brackets(tuple(closers), tuple(stack))
