"""Cut a source file into chunks to index: functions, methods and classes, or windows of lines.

One parse per file (tree-sitter, grammars from the per-language wheels), one query for the definition
nodes, then plain line arithmetic. The rules, in order:

- A function or method is one chunk with its decorators, attributes and the comments right above it;
  definitions nested in a function stay in its text. A body over ``max_chars`` or ``max_lines`` is cut
  into windows of lines that overlap, each with the same symbol and header.
- A class (interface, struct, impl, trait, module...) whose members are all tiny is one chunk. Otherwise
  it becomes a skeleton chunk (the class with the bodies of its members collapsed to ``...``) plus
  one chunk per member, so a method is found as itself. Members under ``min_chars`` stay inline.
- Code between definitions (imports, constants, statements, tiny functions) is merged into ``module``
  chunks; a run holding a single tiny definition and nothing else keeps that definition's symbol.
- Namespaces (C++, C#, PHP, TypeScript) only qualify the context; their members are chunked in place.
- Without a grammar: windows of lines (``kind="lines"``), cut at headings for Markdown.

Every non-blank line of the file is in at least one chunk. Lines are 1-based and inclusive; ``text`` is
the file's own lines (only a large class's skeleton has collapsed bodies). Each call makes its own parser,
so files may be chunked from worker threads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cache

import tree_sitter

from cube_lsp.languages import grammar, language_info
from cube_lsp.search.chunk_rules import (
    CLASS_KINDS,
    FUNCTION_KINDS,
    TRANSPARENT_KINDS,
    LanguageRules,
    rules_for,
)
from cube_lsp.search.types import Chunk

__all__ = ["ChunkOptions", "chunk_source"]

_COLLAPSED = "..."
_MAX_SIGNATURE_CHARS = 400
_ATTRIBUTE_LINE = re.compile(r"^\s*(@|#\[|\[)")
_MARKDOWN_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_MARKDOWN_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_NAME_TYPES = frozenset(
    {
        "identifier",
        "type_identifier",
        "field_identifier",
        "property_identifier",
        "constant",
        "name",
        "simple_identifier",
        "qualified_identifier",
        "scope_resolution",
        "destructor_name",
        "operator_name",
    }
)
# A line that only closes something (`}`, `};`, `end`, `}  // namespace x`): never a chunk of its own.
_CLOSING_LINE = re.compile(r"^\s*([)\]}][\s)\]};,]*|end|\?>)\s*(//.*|#.*)?$")
_GO_SHAPES = frozenset({"struct_type", "interface_type"})
_C_TYPE_SPECIFIERS = frozenset({"struct_specifier", "union_specifier", "enum_specifier", "class_specifier"})
_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function", "generator_function"})


@dataclass(frozen=True)
class ChunkOptions:
    """Sizes of chunks; the defaults suit an embedding model with a 256-512 token window."""

    # a definition longer than this is cut into windows: all-MiniLM-L6-v2 reads 256 tokens (about 900
    # characters of code) and silently drops the rest, so a longer chunk is only partly embedded
    max_chars: int = 900
    max_lines: int = 40  # ... or one with more lines than this
    min_chars: int = 80  # definitions shorter than this (one-liners) merge with their neighbours
    overlap_lines: int = 5  # lines repeated between consecutive windows
    window_lines: int = 40  # window size for files without a grammar

    def __post_init__(self) -> None:
        for name in ("max_chars", "max_lines", "window_lines"):
            if getattr(self, name) < 1:
                raise ValueError(f"ChunkOptions.{name} must be at least 1, got {getattr(self, name)}")
        if self.overlap_lines < 0 or self.min_chars < 0:
            raise ValueError("ChunkOptions.overlap_lines and min_chars cannot be negative")


def chunk_source(
    path: str, text: str, language: str | None, options: ChunkOptions = ChunkOptions()
) -> list[Chunk]:
    """Cut ``text`` (the content of ``path``) into chunks, by definitions when a grammar is known."""
    lines = text.split("\n")
    if not text.strip():
        return []
    info = language_info(language) if language else None
    name = info.name if info is not None else None
    rules = rules_for(name) if name else None
    language_grammar = grammar(name) if name and rules else None
    if rules is None or language_grammar is None:
        return _chunk_lines(path, lines, options)
    source = text.encode("utf-8", "surrogatepass")
    tree = tree_sitter.Parser(language_grammar).parse(source)
    if tree is None:
        return _chunk_lines(path, lines, options)
    definitions = _Collector(rules, source, lines).collect(tree.root_node, _query(name, language_grammar))
    if not definitions and tree.root_node.has_error:
        return _chunk_lines(path, lines, options)  # not this language after all, or too broken to use
    return _Emitter(path, lines, options).emit_file(definitions)


# --- finding definitions --------------------------------------------------------------------------


@dataclass
class _Def:
    """A definition found in the tree, with the rows it covers (0-based, inclusive)."""

    kind: str
    name: str
    symbol: str
    start: int  # first row, decorators and doc comments included
    head: int  # first row of the definition itself (what an outline shows)
    end: int
    signature: str
    signature_end: int  # last row of the signature (the rest is the body)
    context: tuple[str, ...]  # enclosing definitions, e.g. ("class Session",)
    children: list[_Def] = field(default_factory=list)


@cache
def _query(name: str, language: tree_sitter.Language) -> tree_sitter.Query:
    rules = rules_for(name)
    if rules is None:
        raise ValueError(f"no chunking rules for language {name!r}")
    patterns = []
    for node_type in rules.definitions:
        try:
            patterns.append(f"({node_type}) @definition")
            tree_sitter.Query(language, patterns[-1])
        except (tree_sitter.QueryError, NameError, ValueError):
            patterns.pop()  # a type this grammar version does not have
    return tree_sitter.Query(language, "\n".join(patterns))


class _Collector:
    """Turns the definition nodes of one tree into a forest of :class:`_Def`."""

    def __init__(self, rules: LanguageRules, source: bytes, lines: list[str]) -> None:
        self.rules = rules
        self.source = source
        self.lines = lines

    def collect(self, root: tree_sitter.Node, query: tree_sitter.Query) -> list[_Def]:
        captures = tree_sitter.QueryCursor(query).captures(root).get("definition", [])
        nodes = sorted(captures, key=lambda node: (node.start_byte, -node.end_byte))
        top: list[_Def] = []
        stack: list[tuple[int, _Def]] = []  # (end byte, definition) of the enclosing definitions
        for node in nodes:
            while stack and stack[-1][0] <= node.start_byte:
                stack.pop()
            parent = stack[-1][1] if stack else None
            if parent is not None and parent.kind in FUNCTION_KINDS:
                continue  # inside a function: part of that function's text
            definition = self._definition(node, parent)
            if definition is None:
                continue
            (parent.children if parent is not None else top).append(definition)
            stack.append((node.end_byte, definition))
        return top

    def _definition(self, node: tree_sitter.Node, parent: _Def | None) -> _Def | None:
        kind = self.rules.definitions[node.type]
        resolved = self._kind_and_name(node, kind)
        if resolved is None:
            return None
        kind, name = resolved
        if kind == "function" and parent is not None and parent.kind in CLASS_KINDS:
            kind = "method"
        outer = node
        while outer.parent is not None and outer.parent.type in self.rules.wrappers:
            outer = outer.parent
        start = self._leading_start(outer)
        body = self._body(node)
        signature_end = node.start_point.row
        if body is not None:
            # The signature ends on the row where the body opens, or above it when the body opens a
            # line of its own (a Python block, `{` on its own line).
            signature_end = body.start_point.row - (1 if self._starts_line(body) else 0)
        signature = self._signature(node, body)
        if outer.type == "type_definition" and node is not outer:
            signature = f"typedef {signature} {name}"  # C: `typedef struct {...} buffer_t;`
        qualified_parent = (
            parent.symbol if parent is not None and parent.kind not in TRANSPARENT_KINDS else ""
        )
        symbol = f"{qualified_parent}.{name}" if qualified_parent else name
        context = (*parent.context, f"{parent.kind} {parent.symbol}") if parent is not None else ()
        return _Def(
            kind=kind,
            name=name,
            symbol=symbol,
            start=start,
            head=node.start_point.row,
            end=max(node.end_point.row - (1 if node.end_point.column == 0 else 0), node.start_point.row),
            signature=signature,
            signature_end=max(signature_end, node.start_point.row),
            context=context,
        )

    def _kind_and_name(self, node: tree_sitter.Node, kind: str) -> tuple[str, str] | None:
        node_type = node.type
        if node_type in ("variable_declarator", "field_definition", "public_field_definition"):
            value = node.child_by_field_name("value")
            if value is None or value.type not in _FUNCTION_VALUES:
                return None
            target = node.child_by_field_name("name") or node.child_by_field_name("property")
            return (kind, self._text(target)) if target is not None else None
        if node_type == "type_declaration":  # Go: `type X struct {...}` / `type X interface {...}`
            for spec in node.named_children:
                shape = spec.child_by_field_name("type")
                if spec.type == "type_spec" and shape is not None and shape.type in _GO_SHAPES:
                    spec_name = spec.child_by_field_name("name")
                    go_kind = "struct" if shape.type == "struct_type" else "interface"
                    return (go_kind, self._text(spec_name)) if spec_name is not None else None
            return None
        if node_type in _C_TYPE_SPECIFIERS and node.child_by_field_name("body") is None:
            return None  # a use of the type (`struct foo *p`), not its definition
        if node_type == "impl_item":  # Rust: named after the type; `impl Display for Foo` -> Foo
            target = node.child_by_field_name("type")
            return ("impl", self._base_type_name(target)) if target is not None else None
        if node_type == "method_declaration" and self.rules.definitions.get(node_type) == "method":
            receiver = node.child_by_field_name("receiver")  # Go: `func (s *Server) Run()` -> Server.Run
            name = self._name(node)
            if name is None:
                return None
            owner = self._base_type_name(receiver) if receiver is not None else ""
            return ("method", f"{owner}.{name}" if owner else name)
        if node_type == "class_declaration" and any(child.type == "interface" for child in node.children):
            kind = "interface"  # Kotlin writes both with class_declaration
        if node_type == "companion_object" and node.child_by_field_name("name") is None:
            return kind, "Companion"
        name = self._name(node)
        if name is None:
            if kind in CLASS_KINDS or kind in TRANSPARENT_KINDS:
                name = self._typedef_name(node) or "(anonymous)"
            else:
                return None
        return kind, name

    def _name(self, node: tree_sitter.Node) -> str | None:
        target = node.child_by_field_name("name")
        if target is None:
            declarator = node.child_by_field_name("declarator")
            while declarator is not None and declarator.type not in _NAME_TYPES:
                inner = declarator.child_by_field_name("declarator")
                if inner is None:
                    inner = next((c for c in declarator.named_children if c.type in _NAME_TYPES), None)
                declarator = inner
            target = declarator
        if target is None:
            target = next((child for child in node.named_children if child.type in _NAME_TYPES), None)
        if target is None:
            return None
        name = self._text(target)
        for alias in self.rules.separator_aliases:
            name = name.replace(alias, ".")
        return name.strip(".") or None

    def _typedef_name(self, node: tree_sitter.Node) -> str | None:
        parent = node.parent
        if parent is not None and parent.type == "type_definition":
            declarator = parent.child_by_field_name("declarator")
            if declarator is not None:
                return self._text(declarator)
        return None

    def _base_type_name(self, node: tree_sitter.Node) -> str:
        if node.type == "type_identifier":
            return self._text(node)
        stack = [node]
        while stack:
            current = stack.pop()
            if current.type == "type_identifier":
                return self._text(current)
            stack.extend(reversed(current.named_children))
        return self._text(node)

    def _body(self, node: tree_sitter.Node) -> tree_sitter.Node | None:
        value = node.child_by_field_name("value")
        if value is not None and value.type in _FUNCTION_VALUES:  # `const f = (a) => {...}`
            node = value
        body = node.child_by_field_name("body")
        if body is not None:
            return body
        if self.rules.bodies:
            return next((child for child in node.named_children if child.type in self.rules.bodies), None)
        return None

    def _leading_start(self, node: tree_sitter.Node) -> int:
        """Return the first row of ``node`` with the comments and attributes right above it."""
        while node.prev_named_sibling is None and node.parent is not None:
            if node.parent.start_byte != node.start_byte or node.parent.type in self.rules.definitions:
                break
            node = node.parent  # a body that starts with the definition: look above the body
        start = node.start_point.row
        sibling = node.prev_named_sibling
        while (
            sibling is not None
            and sibling.type in self.rules.leading
            and sibling.end_point.row >= start - 1
            and self._starts_line(sibling)
        ):
            start = sibling.start_point.row
            sibling = sibling.prev_named_sibling
        return start

    def _starts_line(self, node: tree_sitter.Node) -> bool:
        line_start = node.start_byte - node.start_point.column
        return not self.source[line_start : node.start_byte].strip()

    def _signature(self, node: tree_sitter.Node, body: tree_sitter.Node | None) -> str:
        end = body.start_byte if body is not None else node.end_byte
        for child in node.named_children:
            if child.start_byte >= end:
                break
            if child.start_byte > node.start_byte and "comment" in child.type:
                end = child.start_byte  # Ruby keeps the comments above the first member in the class
                break
        text = self.source[node.start_byte : min(end, node.start_byte + _MAX_SIGNATURE_CHARS)]
        rows = [row.strip() for row in text.decode("utf-8", "replace").split("\n")]
        if body is None:
            rows = rows[:1]
        while len(rows) > 1 and _ATTRIBUTE_LINE.match(rows[0]):
            rows.pop(0)  # `@Override`, `#[derive(...)]`, `[Serializable]`: the chunk text keeps them
        return "\n".join(row for row in rows if row).rstrip("{").rstrip()

    def _text(self, node: tree_sitter.Node) -> str:
        return self.source[node.start_byte : node.end_byte].decode("utf-8", "replace")


# --- turning definitions into chunks --------------------------------------------------------------


class _Emitter:
    """Cuts the rows of one file into chunks, given its definitions."""

    def __init__(self, path: str, lines: list[str], options: ChunkOptions) -> None:
        self.path = path
        self.lines = lines
        self.options = options
        self.chunks: list[Chunk] = []

    def emit_file(self, definitions: list[_Def]) -> list[Chunk]:
        self._emit_scope(_flatten(definitions), 0, len(self.lines) - 1, ())
        self.chunks.sort(key=lambda chunk: (chunk.start_line, chunk.end_line))
        return self.chunks

    def _emit_scope(self, members: list[_Def], first: int, last: int, context: tuple[str, ...]) -> None:
        """Emit rows first..last: big members as their own chunks, the rest merged into module runs."""
        run: list[int] = []  # rows of the current run of small code
        run_defs: list[_Def] = []
        row = first
        for member in _without_overlaps(members):
            if member.start < row:
                continue
            if self._is_small(member):
                run.extend(range(row, member.end + 1))
                run_defs.append(member)
            else:
                run.extend(range(row, member.start))
                self._flush_run(run, run_defs, context)
                run, run_defs = [], []
                self._emit_definition(member)
            row = member.end + 1
        run.extend(range(row, last + 1))
        self._flush_run(run, run_defs, context)

    def _flush_run(self, rows: list[int], definitions: list[_Def], context: tuple[str, ...]) -> None:
        rows = self._trim(rows)
        if not rows:
            return
        closing_only = all(
            _CLOSING_LINE.match(self.lines[row]) or not self.lines[row].strip() for row in rows
        )
        if closing_only and self._extend_previous(rows[-1]):
            return
        if len(definitions) == 1 and self._only_rows_of(rows, definitions[0]):
            self._emit_definition(definitions[0])
            return
        header = self._header(context, "")
        kind = "module"
        for window in self._windows(rows, self.options.max_lines, self.options.max_chars):
            self._add(None, kind, window, header, None)

    def _emit_definition(self, definition: _Def) -> None:
        rows = list(range(definition.start, definition.end + 1))
        header = self._header(definition.context, definition.signature)
        # A class with members of some size is always its outline plus one chunk per member, even when
        # it would fit whole: a search for what a method does should land on that method.
        if (
            definition.kind in CLASS_KINDS
            and definition.children
            and (not self._fits(rows) or any(not self._is_small(m) for m in _flatten(definition.children)))
        ):
            self._emit_skeleton(definition, header)
            return
        for window in self._windows(rows, self.options.max_lines, self.options.max_chars):
            self._add(definition.symbol, definition.kind, window, header, None)

    def _emit_skeleton(self, definition: _Def, header: str) -> None:
        """Emit a large class as its outline (big members collapsed) plus one chunk per big member."""
        members = _flatten(definition.children)
        collapsed: dict[int, _Def] = {}
        for member in _without_overlaps(members):
            if not self._is_small(member) and member.start > definition.start:
                collapsed[member.start] = member
        rows: list[int] = []
        replaced: dict[int, str] = {}
        row = definition.start
        while row <= definition.end:
            member = collapsed.get(row)
            if member is None:
                rows.append(row)
                row += 1
                continue
            # The outline shows the member's signature only: its docs and body are in its own chunk.
            rows.extend(range(max(member.head, member.start), member.signature_end + 1))
            if member.end > member.signature_end:
                indent = _indent_of(self.lines[member.signature_end]) + "    "
                replaced[member.signature_end] = f"{self.lines[member.signature_end]}\n{indent}{_COLLAPSED}"
                if _CLOSING_LINE.match(self.lines[member.end]):
                    rows.append(member.end)
            row = member.end + 1
        windows = list(self._windows(rows, self.options.max_lines, self.options.max_chars))
        for index, window in enumerate(windows):
            # The outline stands for the whole class: its first and last windows reach the class's ends.
            first = definition.start if index == 0 else window[0]
            last = definition.end if index == len(windows) - 1 else window[-1]
            self._add(definition.symbol, definition.kind, window, header, replaced, (first, last))
        for member in collapsed.values():
            self._emit_definition(member)

    def _extend_previous(self, last_row: int) -> bool:
        """Append closing lines (``}`` of a namespace) to the chunk just above them, if any."""
        before = [index for index, chunk in enumerate(self.chunks) if chunk.end_line - 1 < last_row]
        if not before:
            return False
        index = max(before, key=lambda i: (self.chunks[i].end_line, -self.chunks[i].start_line))
        chunk = self.chunks[index]
        extra = self.lines[chunk.end_line : last_row + 1]
        self.chunks[index] = replace(chunk, end_line=last_row + 1, text="\n".join([chunk.text, *extra]))
        return True

    def _header(self, context: tuple[str, ...], signature: str) -> str:
        parts = [f"path: {self.path}"]
        if context:
            parts.append("in: " + " > ".join(context))
        if signature:
            parts.append(signature)
        return "\n".join(parts)

    def _add(
        self,
        symbol: str | None,
        kind: str,
        rows: list[int],
        header: str,
        replaced: dict[int, str] | None,
        span: tuple[int, int] | None = None,
    ) -> None:
        if replaced:
            text = "\n".join(replaced.get(row, self.lines[row]) for row in rows)
        else:
            text = "\n".join(self.lines[rows[0] : rows[-1] + 1]) if _contiguous(rows) else self._join(rows)
        first, last = span if span is not None else (rows[0], rows[-1])
        self.chunks.append(Chunk(self.path, symbol, kind, first + 1, last + 1, header, text))

    def _join(self, rows: list[int]) -> str:
        return "\n".join(self.lines[row] for row in rows)

    def _is_small(self, definition: _Def) -> bool:
        if self.options.min_chars <= 0 or definition.kind in CLASS_KINDS:
            return False
        size = 0
        for row in range(definition.start, definition.end + 1):
            size += len(self.lines[row]) + 1
            if size >= self.options.min_chars:
                return False
        return True

    def _fits(self, rows: list[int]) -> bool:
        if len(rows) > self.options.max_lines:
            return False
        return sum(len(self.lines[row]) + 1 for row in rows) <= self.options.max_chars

    def _only_rows_of(self, rows: list[int], definition: _Def) -> bool:
        return all(definition.start <= row <= definition.end or not self.lines[row].strip() for row in rows)

    def _trim(self, rows: list[int]) -> list[int]:
        begin, end = 0, len(rows)
        while begin < end and not self.lines[rows[begin]].strip():
            begin += 1
        while end > begin and not self.lines[rows[end - 1]].strip():
            end -= 1
        return rows[begin:end]

    def _windows(self, rows: list[int], max_lines: int, max_chars: int) -> Iterable[list[int]]:
        """Cut rows into windows of at most max_lines / max_chars that overlap; blank windows dropped."""
        return _windows(rows, self.lines, max_lines, max_chars, self.options.overlap_lines)


def _windows(
    rows: list[int], lines: list[str], max_lines: int, max_chars: int, overlap: int
) -> Iterable[list[int]]:
    count = len(rows)
    begin = 0
    max_lines = max(max_lines, 1)
    while begin < count:
        end = begin
        size = 0
        while end < count and end - begin < max_lines:
            width = len(lines[rows[end]]) + 1
            if end > begin and size + width > max_chars:
                break
            size += width
            end += 1
        window = rows[begin:end]
        while window and not lines[window[-1]].strip():
            window.pop()
        while window and not lines[window[0]].strip():
            window.pop(0)
        if window:
            yield window
        if end >= count:
            return
        # Overlap at most half a window, so long lines cannot make windows advance one line at a time.
        begin = max(end - min(overlap, (end - begin) // 2), begin + 1)


def _flatten(definitions: list[_Def]) -> list[_Def]:
    """Replace namespaces by their members: a namespace only qualifies the context of its members."""
    flat: list[_Def] = []
    for definition in definitions:
        if definition.kind in TRANSPARENT_KINDS:
            flat.extend(_flatten(definition.children))
        else:
            flat.append(definition)
    flat.sort(key=lambda definition: definition.start)
    return flat


def _without_overlaps(definitions: list[_Def]) -> list[_Def]:
    """Drop a definition that starts on a row a previous one covers (two definitions on one line)."""
    kept: list[_Def] = []
    for definition in definitions:
        if kept and definition.start <= kept[-1].end:
            if definition.end > kept[-1].end:
                kept[-1].end = definition.end
            continue
        kept.append(definition)
    return kept


def _contiguous(rows: list[int]) -> bool:
    return rows[-1] - rows[0] + 1 == len(rows)


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


# --- files without a grammar ----------------------------------------------------------------------


def _chunk_lines(path: str, lines: list[str], options: ChunkOptions) -> list[Chunk]:
    """Windows of lines; Markdown is first cut into sections at its headings."""
    sections: list[tuple[str | None, list[int]]]
    if path.lower().endswith((".md", ".markdown")):
        sections = _markdown_sections(lines)
    else:
        sections = [(None, list(range(len(lines))))]
    chunks: list[Chunk] = []
    for heading, rows in sections:
        header = f"path: {path}" + (f"\nsection: {heading}" if heading else "")
        for window in _windows(rows, lines, options.window_lines, options.max_chars, options.overlap_lines):
            text = "\n".join(lines[window[0] : window[-1] + 1])
            chunks.append(Chunk(path, heading, "lines", window[0] + 1, window[-1] + 1, header, text))
    return chunks


def _markdown_sections(lines: list[str]) -> list[tuple[str | None, list[int]]]:
    sections: list[tuple[str | None, list[int]]] = [(None, [])]
    in_fence = False
    for row, line in enumerate(lines):
        if _MARKDOWN_FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _MARKDOWN_HEADING.match(line)
        if heading is not None:
            sections.append((heading.group(2) or None, []))
        sections[-1][1].append(row)
    return [(heading, rows) for heading, rows in sections if rows]
