"""Definitions of imported names used near the cursor, found with tree-sitter, as prompt snippets.

It bridges the current file's imports and the files that define what they import. The imports
are parsed with tree-sitter (Python ``import``/``from … import``, JS/TS ``import … from``, Go
``import``, Rust ``use``, Java ``import``, C ``#include "…"``); each module is resolved to a file
among the open/recent documents (exact path, then path suffix) and, through an injected
``read_file(path) -> str | None``, to workspace files relative to the current file. From those
files we extract the definitions of the names used in the lines around the cursor, with function
bodies collapsed (``...`` in Python, ``{ ... }`` elsewhere) so that the model sees signatures,
fields and docstrings, not implementations.

Paths are ``/``-separated (POSIX paths or ``file://`` URIs, whichever the caller uses as keys of
``documents``); ``..`` is resolved textually. Like every context source the search is time-boxed
by a :class:`~cube_lsp.completion.snippets.Deadline` and returns what it has found when it
passes. Go imports are resolved among the open documents only (an import path names a directory
and ``read_file`` cannot list one), as are Java wildcard imports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import tree_sitter

from cube_lsp.completion.snippets import Deadline
from cube_lsp.completion.types import Snippet
from cube_lsp.languages import language_for_path, language_info, parse

__all__ = [
    "Definition",
    "Import",
    "ReadFile",
    "extract_definitions",
    "find_definition_snippets",
    "import_section",
    "parse_imports",
]

ReadFile = Callable[[str], str | None]  # text of a workspace file, None when absent

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Imports sit at the top of a file; parsing only the head keeps a 50k-line file cheap.
_MAX_IMPORT_SCAN_CHARS = 64_000
_MAX_DEFINITION_FILE_CHARS = 400_000
_MAX_IMPORT_TAIL_CHARS = 4000  # a multi-line import (JS `{ … } from`, a Go block) after its first line
# Lines that start an import in one of our languages (a superset: tree-sitter has the last word).
_IMPORT_LINE = re.compile(
    r"^[ \t]*(?:import\b|from\b|(?:pub(?:\([^)\n]*\))?[ \t]+)?use\b|#[ \t]*include\b|package\b"
    r"|export\b[^\n]*\bfrom\b|\}[^\n]*\bfrom\b)[^\n]*",
    re.MULTILINE,
)
_NEAR_LINES_BEFORE = 30  # "near the cursor": this many lines above it ...
_NEAR_LINES_AFTER = 5  # ... and below it
_MAX_COMMENT_LINES = 6  # leading doc comments kept above a definition

_JS_EXTENSIONS = (".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs")


@dataclass(frozen=True)
class Import:
    """One imported module as the current file names it, with where its file may be.

    ``names`` maps a local name to the name inside the module; ``namespace`` is a local name
    bound to the module itself (``import x as ns``, a Go package, ``import * as ns``);
    ``wildcard`` means every name of the module is in scope (``from m import *``, ``#include``).
    """

    module: str  # as written in the source, for logs and tests
    names: tuple[tuple[str, str], ...] = ()
    namespace: str | None = None
    wildcard: bool = False
    paths: tuple[str, ...] = ()  # candidate files, most likely first
    suffixes: tuple[str, ...] = ()  # endings of document paths that may hold the module


@dataclass(frozen=True)
class Definition:
    """One extracted definition: the name it binds and its text with bodies collapsed."""

    name: str
    text: str


@dataclass
class _Near:
    """The identifiers used near the cursor, with their distance (0 = cursor line)."""

    text: str
    distance: dict[str, int] = field(default_factory=dict)


def find_definition_snippets(
    text: str,
    offset: int,
    language_id: str,
    path: str,
    *,
    documents: Mapping[str, str],
    read_file: ReadFile | None,
    deadline: Deadline,
    max_snippets: int = 8,
    max_chars: int = 3000,
) -> list[Snippet]:
    """Return definitions, from imported files, of the imported names used near the cursor.

    Snippets are ordered best first (``score`` 1.0 for a name used on the cursor line, falling
    to 0.5 at the edge of the window around it) and total at most ``max_chars`` characters.
    """
    info = language_info(language_id)
    if info is None or deadline.expired():
        return []
    head = _import_head(text)
    tree = parse(info.name, head.encode("utf-8"))
    reader = _IMPORT_READERS.get(info.name)
    if tree is None or reader is None:
        return []
    imports = reader(tree.root_node, path)
    import_rows = {
        row
        for node in _walk_top(tree.root_node)
        if node.type in _IMPORT_NODES
        for row in range(node.start_point.row, node.end_point.row + 1)
    }
    near = _near_cursor(text, offset, import_rows)
    if not near.distance:
        return []
    found: list[Snippet] = []
    seen: set[tuple[str, str]] = set()
    for imp in imports:
        if deadline.expired():
            break
        targets = _targets(imp, near)
        if not targets:
            continue
        for file_path, file_text in _resolve(imp, path, documents, read_file, deadline):
            file_info = language_for_path(file_path) or info
            if deadline.expired():
                break
            for definition in extract_definitions(file_text, file_info.name, targets):
                key = (file_path, definition.text)
                if key in seen:
                    continue
                seen.add(key)
                distance = targets.get(definition.name, _NEAR_LINES_BEFORE)
                score = 1.0 - 0.5 * min(distance, _NEAR_LINES_BEFORE) / _NEAR_LINES_BEFORE
                found.append(Snippet(path=file_path, text=definition.text, score=score, source="definition"))
    found.sort(key=lambda s: s.score, reverse=True)
    chosen: list[Snippet] = []
    used = 0
    for snippet in found:
        if len(chosen) >= max_snippets:
            break
        if used + len(snippet.text) <= max_chars:
            chosen.append(snippet)
            used += len(snippet.text)
    return chosen


def import_section(text: str) -> str:
    """Return the start of ``text`` through its imports ("" without any): what chat prompts quote."""
    return _import_head(text)


def _import_head(text: str) -> str:
    """Return the start of ``text`` through its import section, so that only that part is parsed.

    The section ends at the first blank line after the last import-looking line of the first
    ``_MAX_IMPORT_SCAN_CHARS`` characters (tree-sitter needs ~1 ms per kB of Python).
    """
    head = text[:_MAX_IMPORT_SCAN_CHARS]
    matches = list(_IMPORT_LINE.finditer(head))
    if not matches:
        return ""
    last = matches[-1]
    end = head.find("\n\n", last.end(), last.end() + _MAX_IMPORT_TAIL_CHARS)
    return head[: end + 1] if end >= 0 else head[: last.end() + _MAX_IMPORT_TAIL_CHARS]


def parse_imports(text: str, language_id: str, path: str) -> list[Import]:
    """Return the imports of a source file, with candidate files resolved against ``path``."""
    info = language_info(language_id)
    if info is None:
        return []
    tree = parse(info.name, text.encode("utf-8"))
    if tree is None:
        return []
    reader = _IMPORT_READERS.get(info.name)
    if reader is None:
        return []
    return reader(tree.root_node, path)


def extract_definitions(text: str, language_id: str, names: Iterable[str]) -> list[Definition]:
    """Return the top-level definitions of ``names`` in a source file, bodies collapsed."""
    info = language_info(language_id)
    wanted = set(names)
    if info is None or not wanted:
        return []
    source = text[:_MAX_DEFINITION_FILE_CHARS].encode("utf-8")
    tree = parse(info.name, source)
    if tree is None:
        return []
    found: list[Definition] = []
    for node in _definition_nodes(tree.root_node, info.name):
        for name in _names(node):
            if name in wanted:
                found.append(Definition(name, _render(node, source, info.name)))
                break
    return found


# --- names used near the cursor ------------------------------------------------------------------


def _near_cursor(text: str, offset: int, skip_rows: set[int]) -> _Near:
    """Collect the identifiers around the cursor, ignoring the import lines (rows in ``skip_rows``)."""
    offset = min(max(offset, 0), len(text))
    line_start = text.rfind("\n", 0, offset) + 1
    start = line_start
    for _ in range(_NEAR_LINES_BEFORE):
        if start <= 0:
            break
        start = text.rfind("\n", 0, start - 1) + 1
    end = offset
    for _ in range(_NEAR_LINES_AFTER + 1):
        following = text.find("\n", end + 1)
        if following < 0:
            end = len(text)
            break
        end = following
    window = text[start:end]
    near = _Near(window)
    cursor_line = text.count("\n", start, line_start)
    # Imports live in the head of the file, so counting rows up to the window is bounded.
    first_row = text.count("\n", 0, start) if skip_rows and start <= _MAX_IMPORT_SCAN_CHARS else -(1 << 30)
    for line_no, line in enumerate(window.split("\n")):
        if first_row + line_no in skip_rows:
            continue
        distance = abs(cursor_line - line_no)
        for ident in _IDENTIFIER.findall(line):
            if distance < near.distance.get(ident, 1 << 30):
                near.distance[ident] = distance
    return near


def _targets(imp: Import, near: _Near) -> dict[str, int]:
    """Return name-in-module -> distance from the cursor for the names of ``imp`` used near it."""
    targets: dict[str, int] = {}
    for local, original in imp.names:
        if local in near.distance:
            targets[original] = min(targets.get(original, 1 << 30), near.distance[local])
    if imp.namespace:
        pattern = re.compile(r"(?<![\w.])" + re.escape(imp.namespace) + r"\s*(?:\.|::)\s*([A-Za-z_]\w*)")
        for match in pattern.finditer(near.text):
            member = match.group(1)
            targets[member] = min(targets.get(member, 1 << 30), near.distance.get(member, 0))
    if imp.wildcard:
        targets.update({name: d for name, d in near.distance.items() if name not in targets})
    return targets


# --- resolving modules to files ------------------------------------------------------------------


def _resolve(
    imp: Import,
    path: str,
    documents: Mapping[str, str],
    read_file: ReadFile | None,
    deadline: Deadline,
) -> Iterable[tuple[str, str]]:
    """Yield (path, text) of the files that may define the module, open documents first."""
    yielded: set[str] = set()
    for candidate in imp.paths:
        if candidate in documents and candidate != path:
            yielded.add(candidate)
            yield candidate, documents[candidate]
            return
    for suffix in imp.suffixes:
        for doc_path, doc_text in documents.items():
            if doc_path != path and doc_path not in yielded and _matches(doc_path, suffix):
                yielded.add(doc_path)
                yield doc_path, doc_text
    if yielded or read_file is None:
        return
    for candidate in imp.paths:
        if deadline.expired():
            return
        if candidate == path:
            continue
        content = read_file(candidate)
        if content is not None:
            yield candidate, content
            return


def _matches(doc_path: str, suffix: str) -> bool:
    """Return whether a document path ends with ``suffix``; ``dir/*.ext`` matches any file in ``dir``."""
    if "/*." in suffix:
        directory, ext = suffix.rsplit("/*", 1)
        return doc_path.endswith(ext) and ("/" + _dirname(doc_path)).endswith(directory)
    return ("/" + doc_path).endswith(suffix)


def _dirname(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def _join(directory: str, relative: str) -> str:
    """Join ``relative`` (with ``.``/``..`` segments) to ``directory`` without normalising the rest."""
    parts = directory.split("/") if directory else []
    for segment in relative.split("/"):
        if segment in ("", "."):
            continue
        if segment == ".." and parts and parts[-1] not in ("", ".."):
            parts.pop()
        else:
            parts.append(segment)
    return "/".join(parts)


def _ancestors(directory: str, levels: int) -> list[str]:
    found = [directory]
    for _ in range(levels):
        directory = _dirname(directory)
        if not directory or directory.endswith(":") or directory.endswith("/"):
            break
        found.append(directory)
    return found


def _text(node: tree_sitter.Node | None) -> str:
    if node is None or node.text is None:
        return ""
    return node.text.decode("utf-8", "replace")


def _python_imports(root: tree_sitter.Node, path: str) -> list[Import]:
    here = _dirname(path)
    imports: list[Import] = []

    def module_files(module: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        dots = len(module) - len(module.lstrip("."))
        rel = module[dots:].replace(".", "/")
        if dots:
            base = here
            for _ in range(dots - 1):
                base = _dirname(base)
            stem = _join(base, rel) if rel else base
            relative: tuple[str, ...] = (
                (f"{stem}.py", f"{stem}/__init__.py") if rel else (f"{stem}/__init__.py",)
            )
            return relative, ()
        if not rel:
            return (), ()
        files = tuple(f for d in _ancestors(here, 4) for f in (f"{d}/{rel}.py", f"{d}/{rel}/__init__.py"))
        return files, (f"/{rel}.py", f"/{rel}/__init__.py")

    for node in _walk_top(root):
        if node.type == "import_statement":
            for name in node.children_by_field_name("name"):
                if name.type == "aliased_import":
                    module, local = (
                        _text(name.child_by_field_name("name")),
                        _text(name.child_by_field_name("alias")),
                    )
                else:
                    module = local = _text(name)
                paths, suffixes = module_files(module)
                imports.append(Import(module, namespace=local, paths=paths, suffixes=suffixes))
        elif node.type == "import_from_statement":
            module = _text(node.child_by_field_name("module_name"))
            paths, suffixes = module_files(module)
            pairs: list[tuple[str, str]] = []
            for name in node.children_by_field_name("name"):
                if name.type == "aliased_import":
                    original, local = (
                        _text(name.child_by_field_name("name")),
                        _text(name.child_by_field_name("alias")),
                    )
                else:
                    original = local = _text(name)
                pairs.append((local, original))
                # `from pkg import mod` may import a module rather than a name.
                sep = "" if module.endswith(".") else "."
                sub_paths, sub_suffixes = module_files(module + sep + original)
                imports.append(
                    Import(module + sep + original, namespace=local, paths=sub_paths, suffixes=sub_suffixes)
                )
            wildcard = any(c.type == "wildcard_import" for c in node.children)
            imports.insert(
                len(imports) - len(pairs),
                Import(module, names=tuple(pairs), wildcard=wildcard, paths=paths, suffixes=suffixes),
            )
    return imports


def _js_imports(root: tree_sitter.Node, path: str) -> list[Import]:
    here = _dirname(path)
    imports: list[Import] = []
    for node in _walk_top(root):
        if node.type != "import_statement":
            continue
        source = node.child_by_field_name("source")
        spec = _text(source)[1:-1]
        if not spec.startswith("."):
            continue  # a package from node_modules
        stem = _join(here, spec)
        candidates = [stem]
        if stem.endswith((".js", ".jsx", ".mjs")):
            bare = stem.rsplit(".", 1)[0]
            candidates += [f"{bare}.ts", f"{bare}.tsx"]
        candidates += [stem + ext for ext in _JS_EXTENSIONS]
        candidates += [f"{stem}/index{ext}" for ext in _JS_EXTENSIONS]
        pairs: list[tuple[str, str]] = []
        namespace = None
        for clause in node.named_children:
            if clause.type != "import_clause":
                continue
            for part in clause.named_children:
                if part.type == "identifier":
                    pairs.append((_text(part), "default"))
                elif part.type == "namespace_import":
                    namespace = _text(part.named_children[-1]) if part.named_children else None
                elif part.type == "named_imports":
                    for spec_node in part.named_children:
                        if spec_node.type != "import_specifier":
                            continue
                        original = _text(spec_node.child_by_field_name("name"))
                        alias = spec_node.child_by_field_name("alias")
                        pairs.append((_text(alias) if alias else original, original))
        imports.append(Import(spec, names=tuple(pairs), namespace=namespace, paths=tuple(candidates)))
    return imports


def _go_imports(root: tree_sitter.Node, path: str) -> list[Import]:
    imports: list[Import] = []
    for node in _walk_top(root):
        if node.type != "import_declaration":
            continue
        specs = [c for c in node.named_children if c.type == "import_spec"]
        for spec_list in (c for c in node.named_children if c.type == "import_spec_list"):
            specs.extend(c for c in spec_list.named_children if c.type == "import_spec")
        for spec in specs:
            import_path = _text(spec.child_by_field_name("path")).strip('"`')
            alias = _text(spec.child_by_field_name("name"))
            package = alias if alias and alias not in ("_", ".") else import_path.rsplit("/", 1)[-1]
            tail = "/".join(import_path.split("/")[-2:])
            suffix = f"/{tail}/" if "/" in import_path else f"/{import_path}/"
            imports.append(
                Import(import_path, namespace=package, wildcard=alias == ".", suffixes=(suffix + "*.go",))
            )
    return imports


def _rust_imports(root: tree_sitter.Node, path: str) -> list[Import]:
    here = _dirname(path)
    stem = path.rsplit("/", 1)[-1].removesuffix(".rs")
    children_dir = here if stem in ("mod", "lib", "main") else f"{here}/{stem}"
    crate_root = here
    probe = here
    while probe:
        if probe.rsplit("/", 1)[-1] == "src":
            crate_root = probe
            break
        probe = _dirname(probe)

    def module_files(segments: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if not segments:
            return (), ()
        head, rest = segments[0], segments[1:]
        if head == "crate":
            bases = [crate_root]
        elif head == "self":
            bases = [children_dir]
        elif head == "super":
            bases = [_dirname(children_dir)]
            while rest and rest[0] == "super":
                bases, rest = [_dirname(bases[0])], rest[1:]
        else:
            bases, rest = [children_dir, crate_root], segments
        if not rest:
            return tuple(f"{b}/mod.rs" for b in bases), ()
        rel = "/".join(rest)
        paths = tuple(p for b in bases for p in (f"{b}/{rel}.rs", f"{b}/{rel}/mod.rs"))
        return paths, (f"/{rel}.rs", f"/{rel}/mod.rs")

    imports: list[Import] = []

    def segments_of(node: tree_sitter.Node | None) -> list[str]:
        return [s for s in _text(node).replace(" ", "").split("::") if s]

    def add(prefix: list[str], node: tree_sitter.Node) -> None:
        if node.type in ("scoped_identifier", "identifier", "self", "crate", "super"):
            segs = prefix + segments_of(node)
            module, name = segs[:-1], segs[-1]
            paths, suffixes = module_files(module)
            imports.append(Import("::".join(module), names=((name, name),), paths=paths, suffixes=suffixes))
            paths, suffixes = module_files(segs)  # the last segment may be a module
            imports.append(Import("::".join(segs), namespace=name, paths=paths, suffixes=suffixes))
        elif node.type == "use_as_clause":
            segs = prefix + segments_of(node.child_by_field_name("path"))
            alias = _text(node.child_by_field_name("alias"))
            paths, suffixes = module_files(segs[:-1])
            imports.append(
                Import("::".join(segs[:-1]), names=((alias, segs[-1]),), paths=paths, suffixes=suffixes)
            )
        elif node.type == "scoped_use_list":
            base = prefix + segments_of(node.child_by_field_name("path"))
            use_list = node.child_by_field_name("list")
            for item in use_list.named_children if use_list else ():
                add(base, item)
        elif node.type == "use_wildcard":
            segs = prefix + segments_of(node.named_children[0] if node.named_children else None)
            paths, suffixes = module_files(segs)
            imports.append(Import("::".join(segs), wildcard=True, paths=paths, suffixes=suffixes))

    for node in _walk_top(root):
        if node.type == "use_declaration":
            argument = node.child_by_field_name("argument")
            if argument is not None:
                add([], argument)
    return [imp for imp in imports if imp.paths or imp.suffixes]


def _java_imports(root: tree_sitter.Node, path: str) -> list[Import]:
    here = _dirname(path)
    package = ""
    imports: list[Import] = []
    nodes = list(_walk_top(root))
    for node in nodes:
        if node.type == "package_declaration":
            package = _text(node.named_children[0]) if node.named_children else ""
    package_dir = package.replace(".", "/")
    source_root = here[: -len(package_dir) - 1] if package_dir and here.endswith("/" + package_dir) else None
    for node in nodes:
        if node.type != "import_declaration" or not node.named_children:
            continue
        dotted = _text(node.named_children[0])
        is_static = any(c.type == "static" for c in node.children)
        wildcard = any(c.type == "asterisk" for c in node.children)
        parts = dotted.split(".")
        if wildcard:
            rel_dir = "/".join(parts)
            if is_static:
                rel = rel_dir + ".java"
                paths = (f"{source_root}/{rel}",) if source_root else ()
                imports.append(Import(dotted, wildcard=True, paths=paths, suffixes=(f"/{rel}",)))
            else:
                imports.append(Import(dotted, wildcard=True, suffixes=(f"/{rel_dir}/*.java",)))
            continue
        class_parts = parts[:-1] if is_static else parts
        rel = "/".join(class_parts) + ".java"
        paths = (f"{source_root}/{rel}",) if source_root else ()
        imports.append(Import(dotted, names=((parts[-1], parts[-1]),), paths=paths, suffixes=(f"/{rel}",)))
    return imports


def _c_imports(root: tree_sitter.Node, path: str) -> list[Import]:
    here = _dirname(path)
    imports: list[Import] = []
    for node in _walk_top(root):
        if node.type != "preproc_include":
            continue
        target = node.child_by_field_name("path")
        if target is None or target.type != "string_literal":
            continue  # <system.h>
        header = _text(target)[1:-1]
        imports.append(Import(header, wildcard=True, paths=(_join(here, header),), suffixes=(f"/{header}",)))
    return imports


_IMPORT_READERS: dict[str, Callable[[tree_sitter.Node, str], list[Import]]] = {
    "python": _python_imports,
    "javascript": _js_imports,
    "typescript": _js_imports,
    "tsx": _js_imports,
    "go": _go_imports,
    "rust": _rust_imports,
    "java": _java_imports,
    "c": _c_imports,
}


# --- extracting definitions ----------------------------------------------------------------------

_IMPORT_NODES = frozenset(
    {
        "import_statement",
        "import_from_statement",
        "future_import_statement",
        "import_declaration",
        "package_declaration",
        "package_clause",
        "use_declaration",
        "preproc_include",
    }
)

_CONTAINERS = frozenset(
    {
        "preproc_ifdef",
        "preproc_if",
        "preproc_else",
        "preproc_elif",
        "linkage_specification",
        "import_spec_list",
    }
)

_DEFINITIONS = frozenset(
    {
        # python
        "function_definition",
        "class_definition",
        "decorated_definition",
        "expression_statement",
        # javascript / typescript
        "function_declaration",
        "generator_function_declaration",
        "class_declaration",
        "abstract_class_declaration",
        "interface_declaration",
        "type_alias_declaration",
        "enum_declaration",
        "lexical_declaration",
        "variable_declaration",
        "export_statement",
        # go
        "method_declaration",
        "type_declaration",
        "const_declaration",
        "var_declaration",
        # rust
        "function_item",
        "function_signature_item",
        "struct_item",
        "enum_item",
        "union_item",
        "trait_item",
        "type_item",
        "const_item",
        "static_item",
        "macro_definition",
        "impl_item",
        # java
        "record_declaration",
        "annotation_type_declaration",
        "constructor_declaration",
        "field_declaration",
        # c
        "declaration",
        "type_definition",
        "struct_specifier",
        "union_specifier",
        "enum_specifier",
        "preproc_def",
        "preproc_function_def",
    }
)

# Functions whose `body` is collapsed, and the block node types that count as a body.
_FUNCTIONS = frozenset(
    {
        "function_definition",
        "function_declaration",
        "generator_function_declaration",
        "function_expression",
        "arrow_function",
        "method_definition",
        "method_declaration",
        "constructor_declaration",
        "function_item",
        "func_literal",
    }
)
_BODIES = frozenset({"block", "statement_block", "compound_statement", "constructor_body"})
_JAVA_CLASSES = frozenset(
    {"class_declaration", "interface_declaration", "enum_declaration", "record_declaration"}
)


def _walk_top(root: tree_sitter.Node) -> Iterable[tree_sitter.Node]:
    """Yield top-level nodes, looking inside preprocessor conditionals and similar containers."""
    for child in root.named_children:
        if child.type in _CONTAINERS:
            yield from _walk_top(child)
        else:
            yield child


def _definition_nodes(root: tree_sitter.Node, language: str) -> Iterable[tree_sitter.Node]:
    for node in _walk_top(root):
        if node.type not in _DEFINITIONS:
            continue
        yield node
        if language == "java" and node.type in _JAVA_CLASSES:
            # `import static pkg.Cls.member` names a member of a top-level class.
            body = node.child_by_field_name("body")
            for member in body.named_children if body else ():
                if member.type in _DEFINITIONS:
                    yield member


def _names(node: tree_sitter.Node) -> list[str]:
    """Return the names a definition node binds."""
    kind = node.type
    if kind == "export_statement":
        inner = node.child_by_field_name("declaration") or node.child_by_field_name("value")
        names = _names(inner) if inner is not None else []
        if any(c.type == "default" for c in node.children):
            names.append("default")
        return names
    if kind == "decorated_definition":
        inner = node.child_by_field_name("definition")
        return _names(inner) if inner is not None else []
    if kind == "expression_statement":  # python `NAME = value`
        assignment = node.named_children[0] if node.named_children else None
        if assignment is not None and assignment.type == "assignment":
            left = assignment.child_by_field_name("left")
            return [_text(left)] if left is not None and left.type == "identifier" else []
        return []
    if kind == "impl_item":
        impl_type = node.child_by_field_name("type")
        if impl_type is not None and impl_type.type == "generic_type":
            impl_type = impl_type.child_by_field_name("type")
        return [_text(impl_type)]
    if kind in (
        "lexical_declaration",
        "variable_declaration",
        "type_declaration",
        "const_declaration",
        "var_declaration",
    ):
        return [
            _text(c.child_by_field_name("name")) for c in node.named_children if c.child_by_field_name("name")
        ]
    if kind == "field_declaration":  # java constants
        return [
            _text(c.child_by_field_name("name"))
            for c in node.named_children
            if c.type == "variable_declarator"
        ]
    name = node.child_by_field_name("name")
    names = [_text(name)] if name is not None else []
    declarator = node.child_by_field_name("declarator")
    while declarator is not None:  # c: pointer_declarator -> function_declarator -> identifier
        if declarator.type in ("identifier", "type_identifier", "field_identifier"):
            names.append(_text(declarator))
            break
        declarator = declarator.child_by_field_name("declarator")
    if kind == "type_definition":
        inner_type = node.child_by_field_name("type")
        if inner_type is not None and inner_type.child_by_field_name("name") is not None:
            names.append(_text(inner_type.child_by_field_name("name")))
    return names


def _render(node: tree_sitter.Node, source: bytes, language: str) -> str:
    """Return the definition's text with leading doc comments and function bodies collapsed."""
    start = node.start_byte
    comments = 0
    previous = node.prev_named_sibling
    line = node.start_point.row
    while previous is not None and "comment" in previous.type and comments < _MAX_COMMENT_LINES:
        if previous.end_point.row < line - 1:
            break
        start, line = previous.start_byte, previous.start_point.row
        comments += 1
        previous = previous.prev_named_sibling
    cuts: list[tuple[int, int, bytes]] = []
    _collect_bodies(node, language, cuts)
    pieces: list[bytes] = []
    position = start
    line_start = source.rfind(b"\n", 0, start) + 1
    indent = source[line_start:start] if not source[line_start:start].strip() else b""
    for cut_start, cut_end, replacement in sorted(cuts):
        pieces.append(source[position:cut_start])
        pieces.append(replacement)
        position = cut_end
    pieces.append(source[position : node.end_byte])
    text = (indent + b"".join(pieces)).decode("utf-8", "replace")
    return _dedent(text)


def _collect_bodies(node: tree_sitter.Node, language: str, cuts: list[tuple[int, int, bytes]]) -> None:
    if node.type in _FUNCTIONS:
        body = node.child_by_field_name("body")
        if body is not None and body.type in _BODIES:
            if language == "python":
                statements = body.named_children
                first = statements[0] if statements else None
                is_doc = (
                    first is not None
                    and first.type == "expression_statement"
                    and first.named_children
                    and first.named_children[0].type == "string"
                )
                if is_doc and len(statements) == 1:
                    return
                cut_from = statements[1].start_byte if is_doc else body.start_byte
                cuts.append((cut_from, body.end_byte, b"..."))
            else:
                cuts.append((body.start_byte, body.end_byte, b"{ ... }"))
            return
    for child in node.named_children:
        _collect_bodies(child, language, cuts)


def _dedent(text: str) -> str:
    lines = text.split("\n")
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return "\n".join(line[cut:] for line in lines).strip("\n")
