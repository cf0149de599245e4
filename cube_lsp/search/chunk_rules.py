"""Per-language tables for the chunker: which tree-sitter nodes are definitions, and what surrounds them.

Kept apart from ``chunker.py`` so that supporting a language is data, not code. Node type names come
from each grammar's ``node-types.json`` (the wheels listed in ``pyproject.toml``); a type a grammar does
not have is dropped when the query is built, so a table may name types of several grammar versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CLASS_KINDS", "FUNCTION_KINDS", "TRANSPARENT_KINDS", "LanguageRules", "rules_for"]

# Kinds that hold methods: a large one becomes a skeleton chunk with its big members collapsed.
CLASS_KINDS = frozenset(
    {"class", "interface", "struct", "enum", "trait", "impl", "module", "object", "record"}
)
# Kinds whose bodies are code: definitions nested inside them stay part of their text.
FUNCTION_KINDS = frozenset({"function", "method", "macro"})
# Kinds that only qualify names ("in: namespace X"): their members are chunked as if at their level.
TRANSPARENT_KINDS = frozenset({"namespace"})


@dataclass(frozen=True)
class LanguageRules:
    """What the chunker needs to know of one grammar."""

    definitions: dict[str, str]  # node type -> kind ("function", "class"...); "method" is derived
    leading: frozenset[str] = frozenset({"comment"})  # siblings kept above a definition (docs, attributes)
    wrappers: frozenset[str] = frozenset()  # parents that carry a definition's decorators or `export`
    bodies: frozenset[str] = frozenset()  # body node types, for grammars without a `body` field
    separator_aliases: tuple[str, ...] = ("::",)  # written as "." in qualified symbols
    extra: dict[str, str] = field(default_factory=dict)  # free-form switches read by the chunker


_C_COMMENTS = frozenset({"comment"})
_JAVA_COMMENTS = frozenset({"line_comment", "block_comment"})

_JS_DEFINITIONS = {
    "function_declaration": "function",
    "generator_function_declaration": "function",
    "class_declaration": "class",
    "method_definition": "function",
    # `const f = () => {}` and `handler = () => {}` in a class: only when the value is a function.
    "variable_declarator": "function",
    "field_definition": "function",
    "public_field_definition": "function",
}
_TS_DEFINITIONS = {
    **_JS_DEFINITIONS,
    "abstract_class_declaration": "class",
    "interface_declaration": "interface",
    "enum_declaration": "enum",
    "internal_module": "namespace",
    "module": "namespace",
}
_JS_RULES = LanguageRules(
    definitions=_JS_DEFINITIONS,
    leading=frozenset({"comment", "decorator"}),
    wrappers=frozenset({"export_statement", "lexical_declaration", "variable_declaration"}),
    bodies=frozenset({"class_body", "statement_block"}),
)
_TS_RULES = LanguageRules(
    definitions=_TS_DEFINITIONS,
    leading=_JS_RULES.leading,
    wrappers=_JS_RULES.wrappers,
    bodies=frozenset({"class_body", "statement_block", "interface_body", "object_type", "enum_body"}),
)

_RULES: dict[str, LanguageRules] = {
    "python": LanguageRules(
        definitions={"function_definition": "function", "class_definition": "class"},
        wrappers=frozenset({"decorated_definition"}),
    ),
    "javascript": _JS_RULES,
    "typescript": _TS_RULES,
    "tsx": _TS_RULES,
    "go": LanguageRules(
        definitions={
            "function_declaration": "function",
            "method_declaration": "method",
            "type_declaration": "struct",  # kept only for struct and interface types
        },
    ),
    "rust": LanguageRules(
        definitions={
            "function_item": "function",
            "impl_item": "impl",
            "trait_item": "trait",
            "struct_item": "struct",
            "enum_item": "enum",
            "union_item": "struct",
            "mod_item": "module",
            "macro_definition": "macro",
        },
        leading=frozenset({"line_comment", "block_comment", "attribute_item"}),
    ),
    "java": LanguageRules(
        definitions={
            "class_declaration": "class",
            "interface_declaration": "interface",
            "enum_declaration": "enum",
            "record_declaration": "record",
            "annotation_type_declaration": "interface",
            "method_declaration": "function",
            "constructor_declaration": "function",
        },
        leading=_JAVA_COMMENTS,
    ),
    "c": LanguageRules(
        definitions={
            "function_definition": "function",
            "struct_specifier": "struct",
            "union_specifier": "struct",
            "enum_specifier": "enum",
        },
        leading=_C_COMMENTS,
        wrappers=frozenset({"type_definition", "declaration"}),
    ),
    "cpp": LanguageRules(
        definitions={
            "function_definition": "function",
            "class_specifier": "class",
            "struct_specifier": "struct",
            "union_specifier": "struct",
            "enum_specifier": "enum",
            "namespace_definition": "namespace",
        },
        leading=_C_COMMENTS,
        wrappers=frozenset({"template_declaration", "type_definition", "declaration"}),
    ),
    "csharp": LanguageRules(
        definitions={
            "class_declaration": "class",
            "struct_declaration": "struct",
            "interface_declaration": "interface",
            "enum_declaration": "enum",
            "record_declaration": "record",
            "record_struct_declaration": "record",
            "method_declaration": "function",
            "constructor_declaration": "function",
            "destructor_declaration": "function",
            "operator_declaration": "function",
            "local_function_statement": "function",
            "namespace_declaration": "namespace",
        },
    ),
    "ruby": LanguageRules(
        definitions={
            "method": "function",
            "singleton_method": "function",
            "class": "class",
            "module": "module",
        },
    ),
    "php": LanguageRules(
        definitions={
            "function_definition": "function",
            "method_declaration": "function",
            "class_declaration": "class",
            "interface_declaration": "interface",
            "trait_declaration": "trait",
            "enum_declaration": "enum",
            "namespace_definition": "namespace",
        },
        separator_aliases=("::", "\\"),
    ),
    "kotlin": LanguageRules(
        definitions={
            "class_declaration": "class",
            "object_declaration": "object",
            "companion_object": "object",
            "function_declaration": "function",
            "secondary_constructor": "function",
        },
        leading=frozenset({"line_comment", "block_comment", "comment", "multiline_comment"}),
        bodies=frozenset({"class_body", "function_body", "enum_class_body"}),
    ),
}


def rules_for(language: str) -> LanguageRules | None:
    """Return the chunking rules of a canonical language name; None when it has none."""
    return _RULES.get(language)
