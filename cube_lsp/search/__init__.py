"""Semantic workspace search: files -> tree-sitter chunks -> SQLite/FTS5 + embeddings -> hybrid ranking."""
