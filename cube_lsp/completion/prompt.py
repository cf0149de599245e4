"""Building the FIM request: the one call that turns a document and a cursor into what the model gets.

It bridges the completion engine and the wire request (:class:`~cube_lsp.cube.requests.FimRequest`)
by combining the token budget (:mod:`.budget`), the cross-file snippets collected beforehand
(:mod:`.snippets`, :mod:`.definitions`) and the model's template (:mod:`.templates`):

- raw mode renders the whole prompt with our template and sends an empty ``suffix``;
- native mode sends the prefix (with snippets prepended as a ``Path:`` comment block) and the
  suffix separately, and the runtime applies the model's own template.

Snippets share what the prefix and suffix left of the budget. They are taken best score first,
skipping any that no longer fit, and rendered best last, so the most relevant code sits nearest
the cursor. Stop strings come from the template; a single-line completion also stops at a newline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cube_lsp.completion.budget import CharRatioCounter, TokenCounter, build_prompt_context
from cube_lsp.completion.templates import (
    FimTemplate,
    format_snippets_as_comments,
    render_prompt,
    template_for_model,
)
from cube_lsp.completion.types import Snippet
from cube_lsp.cube.requests import FimRequest
from cube_lsp.settings import CompletionSettings

__all__ = ["BuiltPrompt", "PromptInput", "build_fim_prompt", "build_fim_request", "select_snippets"]

_DEFAULT_COUNTER = CharRatioCounter()


@dataclass(frozen=True)
class BuiltPrompt:
    """A FIM request together with what went into it (for the cache key and logs)."""

    request: FimRequest
    template: FimTemplate
    prefix_start: int  # document offset where the prefix sent to the model starts
    suffix_end: int  # document offset where the suffix sent to the model ends
    snippets: tuple[Snippet, ...]  # the snippets used, in prompt order (best last)


@dataclass(frozen=True)
class PromptInput:
    """Everything a FIM prompt is built from, besides the settings: one object, not nine arguments."""

    text: str  # the whole document
    offset: int  # the cursor, a str index into ``text``
    language_id: str
    path: str  # shown to the model
    model: str  # picks the FIM template (unless the settings give one)
    snippets: Sequence[Snippet] = ()  # cross-file context (cube_lsp.context), best last after selection
    raw: bool = False  # render the template ourselves (raw mode) instead of Ollama's native suffix
    multiline: bool = True  # False adds a newline stop
    repo_name: str = ""  # shown to models whose template names the repository


def build_fim_request(source: PromptInput, settings: CompletionSettings) -> FimRequest:
    """Return the FIM request for a completion at ``source.offset``."""
    return build_fim_prompt(source, settings).request


def build_fim_prompt(
    source: PromptInput, settings: CompletionSettings, *, counter: TokenCounter = _DEFAULT_COUNTER
) -> BuiltPrompt:
    """Return the FIM request and the parts used."""
    text, offset, language_id, path, model = (
        source.text,
        source.offset,
        source.language_id,
        source.path,
        source.model,
    )
    snippets, raw, multiline, repo_name = source.snippets, source.raw, source.multiline, source.repo_name
    template = template_for_model(model, settings.template)
    offered = [s for s in snippets if s.path != path] if settings.cross_file_context else []
    reserved = counter.count(template.prefix + template.suffix + template.middle)
    if raw and offered and template.snippet_style != "comments":
        reserved += counter.count(f"<|file_sep|>{path}\n<|repo_name|>{repo_name}\n")
    context = build_prompt_context(
        text,
        offset,
        max_prompt_tokens=settings.max_prompt_tokens,
        prefix_percentage=settings.prefix_percentage,
        max_suffix_percentage=settings.max_suffix_percentage,
        reserved_tokens=reserved,
        counter=counter,
    )
    style = template.snippet_style if raw else "comments"
    used = select_snippets(offered, context.snippet_tokens, language_id, counter, style=style)
    if raw:
        prompt = render_prompt(
            template,
            context.prefix,
            context.suffix,
            used,
            path,
            language_id=language_id,
            repo_name=repo_name,
        )
        suffix = ""
    else:
        prompt = format_snippets_as_comments(used, language_id) + context.prefix
        suffix = context.suffix
    stop = template.stop if multiline else (*template.stop, "\n")
    request = FimRequest(
        model=model,
        prompt=prompt,
        suffix=suffix,
        raw=raw,
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        stop=stop,
    )
    return BuiltPrompt(request, template, context.prefix_start, context.suffix_end, tuple(used))


def select_snippets(
    snippets: Sequence[Snippet],
    budget_tokens: int,
    language_id: str,
    counter: TokenCounter = _DEFAULT_COUNTER,
    *,
    style: str = "comments",
) -> list[Snippet]:
    """Return the best snippets that fit in ``budget_tokens``, deduplicated, ordered best last."""
    chosen: list[Snippet] = []
    seen: set[tuple[str, str]] = set()
    used = 0
    for snippet in sorted(snippets, key=lambda s: s.score, reverse=True):
        key = (snippet.path, snippet.text)
        if key in seen or not snippet.text.strip():
            continue
        if style == "comments":
            rendered = format_snippets_as_comments([snippet], language_id)
        else:  # a file-separator token, the path and the text
            rendered = f"<|file_sep|>{snippet.path}\n{snippet.text}\n"
        cost = counter.count(rendered) + 1  # the separator line between two blocks
        if used + cost > budget_tokens:
            continue
        seen.add(key)
        used += cost
        chosen.append(snippet)
    chosen.reverse()
    return chosen
