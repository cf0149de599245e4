"""Decide whether the completion at a cursor may span several lines.

The ``multiline`` setting forces the answer ("always"/"never"); "auto" looks at the cursor: a blank
line or the start of a block (after ``def ...:``, ``{``, ``=>``, inside an empty ``{}`` body) gets a
multi-line completion, while the middle of a line, a comment, a string or an unfinished expression gets
one line. tree-sitter finds comments, strings and enclosing expressions; only a window of lines around
the cursor is parsed, so the cost does not grow with the file.
"""

from __future__ import annotations

import re

import tree_sitter

from cube_lsp.languages import language_info, parse, scan_line_end

__all__ = ["decide_multiline", "opens_block"]

_WINDOW_BEFORE = 200  # lines parsed above the cursor
_WINDOW_AFTER = 50  # lines parsed below the cursor

# Node types that mean "inside an expression": a blank line there continues the expression.
_EXPRESSION_NODES = frozenset(
    {
        "argument_list",
        "arguments",
        "parameters",
        "formal_parameters",
        "parameter_list",
        "parenthesized_expression",
        "binary_expression",
        "binary_operator",
        "boolean_operator",
        "comparison_operator",
        "condition_clause",
        "subscript",
        "index_expression",
    }
)
# Node types of statement containers: a blank line there starts a statement.
_BLOCK_NODES = frozenset(
    {
        "block",
        "statement_block",
        "compound_statement",
        "declaration_list",
        "class_body",
        "field_declaration_list",
        "constructor_body",
        "module",
        "program",
        "source_file",
        "translation_unit",
    }
)
_LINE_END_CLOSERS = re.compile(r"[\s)\]};,]*")
_CASE_LABEL = re.compile(r"(case\b.*|default\s*):")
# The end of a line that leaves an expression unfinished.
_CONTINUES = re.compile(r"(&&|\|\||[-+*%=!&|^,.(\[?\\]|(?<![*/])/|\b(and|or|not|in))\s*$")


def _bracket_depth(line: str) -> int:
    """Return opened minus closed brackets of a line, ignoring quoted text (a rough count)."""
    depth = 0
    quote = ""
    escaped = False
    for char in line:
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
    return depth


def _previous_code_line(text: str, line_start: int) -> str:
    """Return the nearest non-blank line before the cursor line (looking back a few lines)."""
    end = line_start - 1
    for _ in range(20):
        if end < 0:
            break
        start = text.rfind("\n", 0, end) + 1
        line = text[start:end].rstrip()
        if line:
            return line
        end = start - 1
    return ""


def opens_block(line: str, language_id: str) -> bool:
    """Return whether ``line`` (a line of code, or the text before the cursor) ends by opening a block."""
    stripped = line.strip()
    if not stripped:
        return False
    info = language_info(language_id)
    if info is not None and info.name == "python":
        return stripped.endswith(":") and _bracket_depth(stripped) <= 0
    if stripped.endswith(("{", "=>")):
        return True
    return _CASE_LABEL.fullmatch(stripped) is not None


def _window(text: str, offset: int) -> tuple[str, int]:
    """Return the lines around ``offset`` and the cursor's index in them."""
    start = offset
    for _ in range(_WINDOW_BEFORE):
        start = text.rfind("\n", 0, start)
        if start < 0:
            break
    start = 0 if start < 0 else start + 1
    end = offset - 1
    for _ in range(_WINDOW_AFTER):
        end = text.find("\n", end + 1)
        if end < 0:
            break
    end = len(text) if end < 0 else end
    return text[start:end], offset - start


def _is_comment(node: tree_sitter.Node, cursor: int, source: bytes) -> bool:
    if not node.start_byte < cursor <= node.end_byte:
        return False
    # At the very end of a comment the cursor is still inside a line comment, not after "*/".
    return cursor < node.end_byte or not source[node.start_byte : node.end_byte].endswith(b"*/")


def _is_string(node: tree_sitter.Node, cursor: int) -> bool:
    if not node.start_byte < cursor <= node.end_byte:
        return False
    return cursor < node.end_byte or node.is_missing or node.has_error


def _syntax_says_single(language_id: str, window: str, cursor: int, blank_line: bool) -> bool:
    """Return whether tree-sitter puts the cursor in a comment, a string or (blank line) an expression."""
    source = window.encode()
    tree = parse(language_id, source)
    if tree is None:
        return False
    byte = len(window[:cursor].encode())
    node: tree_sitter.Node | None = tree.root_node.descendant_for_byte_range(max(byte - 1, 0), byte)
    while node is not None:
        kind = node.type
        if "comment" in kind and _is_comment(node, byte, source):
            return True
        if (("string" in kind and "content" not in kind) or kind in ("char_literal", "rune_literal")) and (
            _is_string(node, byte)
        ):
            return True
        node = node.parent
    if not blank_line:
        return False
    node = tree.root_node.descendant_for_byte_range(byte, byte)
    while node is not None:
        if node.type in _EXPRESSION_NODES:
            return True
        if node.type in _BLOCK_NODES:
            return False
        node = node.parent
    return False


def _in_comment_or_string(line_before: str, language_id: str) -> bool:
    """Return whether the cursor line, up to the cursor, ends inside a line comment or an open string."""
    quote, in_comment = scan_line_end(line_before, language_id)
    return in_comment or quote != ""


def decide_multiline(text: str, offset: int, language_id: str, setting: str) -> bool:
    """Return whether a completion at ``text[offset]`` (a character index) may span several lines."""
    if setting == "always":
        return True
    if setting == "never":
        return False
    offset = max(0, min(offset, len(text)))
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    before = text[line_start:offset]
    after = text[offset : len(text) if line_end < 0 else line_end].rstrip("\r")
    if _in_comment_or_string(before, language_id):
        return False
    # Text after the cursor makes it a mid-line edit, unless it is only closers: `{║}` is an empty body.
    if after.strip() and not _LINE_END_CLOSERS.fullmatch(after):
        return False
    if before.strip() and not opens_block(before, language_id):
        return False
    if not before.strip() and _CONTINUES.search(_previous_code_line(text, line_start)):
        return False  # a blank line inside an unfinished expression (`a &&`, `foo(x,`)
    window, cursor = _window(text, offset)
    return not _syntax_says_single(language_id, window, cursor, blank_line=not before.strip())
