"""Fill-in-the-middle templates: which special tokens a model expects around the code, and its stop tokens.

It bridges a model name from the settings (``qwen2.5-coder:1.5b``,
``hf.co/bartowski/Qwen2.5-Coder-7B-GGUF``) and the exact prompt text the model was trained on. The
table is matched by substrings of the lower-cased model name, first match wins; a user
:class:`~cube_lsp.settings.Template` overrides it. In raw mode (:func:`render_prompt`) we write
the whole prompt; otherwise the runtime applies the model's template and snippets travel in the
prefix as a comment block (:func:`format_snippets_as_comments`).

Snippets are rendered as the model saw multi-file context in training where the format is known
(Qwen2.5-Coder ``<|repo_name|>``/``<|file_sep|>``, StarCoder2 ``<file_sep>``), and as a comment
block headed ``Path: <file>`` (Tabby's format) for the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from cube_lsp.completion.types import Snippet
from cube_lsp.languages import language_for_path, line_comment
from cube_lsp.settings import Template

__all__ = [
    "FALLBACK_TEMPLATE",
    "TEMPLATES",
    "FimTemplate",
    "SnippetStyle",
    "format_snippets_as_comments",
    "render_prompt",
    "template_for_model",
]

SnippetStyle = Literal["comments", "qwen_repo", "starcoder2_repo"]


@dataclass(frozen=True)
class FimTemplate:
    """The special tokens of one FIM prompt format.

    PSM renders ``prefix + <code before> + suffix + <code after> + middle``; SPM renders
    ``suffix + <code after> + prefix + <code before> + middle``.
    """

    name: str  # shown in logs and the cache key
    prefix: str  # marker before the code above the cursor
    suffix: str  # marker before the code below the cursor
    middle: str  # marker after which the model writes the completion
    stop: tuple[str, ...]  # strings that end the completion
    order: Literal["psm", "spm"] = "psm"
    snippet_style: SnippetStyle = "comments"  # how other files go into a raw prompt


_QWEN = FimTemplate(
    name="qwen2.5-coder",
    prefix="<|fim_prefix|>",
    suffix="<|fim_suffix|>",
    middle="<|fim_middle|>",
    stop=(
        "<|endoftext|>",
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|fim_pad|>",
        "<|repo_name|>",
        "<|file_sep|>",
        "<|im_start|>",
        "<|im_end|>",
    ),
    snippet_style="qwen_repo",
)

_STARCODER2 = FimTemplate(
    name="starcoder2",
    prefix="<fim_prefix>",
    suffix="<fim_suffix>",
    middle="<fim_middle>",
    stop=("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "<repo_name>", "<|endoftext|>"),
    snippet_style="starcoder2_repo",
)

_CODELLAMA = FimTemplate(
    name="codellama",
    prefix="<PRE> ",
    suffix=" <SUF>",
    middle=" <MID>",
    stop=("<PRE>", "<SUF>", "<MID>", "<EOT>"),
)

_DEEPSEEK = FimTemplate(
    name="deepseek-coder",
    prefix="<｜fim▁begin｜>",
    suffix="<｜fim▁hole｜>",
    middle="<｜fim▁end｜>",
    stop=("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<｜end▁of▁sentence｜>", "<|EOT|>"),
)

_CODEGEMMA = FimTemplate(
    name="codegemma",
    prefix="<|fim_prefix|>",
    suffix="<|fim_suffix|>",
    middle="<|fim_middle|>",
    stop=(
        "<|fim_prefix|>",
        "<|fim_suffix|>",
        "<|fim_middle|>",
        "<|file_separator|>",
        "<end_of_turn>",
        "<eos>",
    ),
)

_CODESTRAL = FimTemplate(
    name="codestral",
    prefix="[PREFIX]",
    suffix="[SUFFIX]",
    middle="",
    stop=("[PREFIX]", "[SUFFIX]", "[MIDDLE]", "</s>"),
    order="spm",
)

# StarCoder(1), SantaCoder, stable-code, CodeQwen1.5 and granite-code share these tokens; it is
# also the most common format among other FIM models, hence the fallback.
_STARCODER = FimTemplate(
    name="starcoder",
    prefix="<fim_prefix>",
    suffix="<fim_suffix>",
    middle="<fim_middle>",
    stop=("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "<|endoftext|>"),
)

FALLBACK_TEMPLATE = _STARCODER

# (substrings that must all occur in the lower-cased model name, template); first match wins, so
# more specific names come first ("starcoder2" before "starcoder").
TEMPLATES: tuple[tuple[tuple[str, ...], FimTemplate], ...] = (
    (("qwen", "coder"), _QWEN),  # qwen2.5-coder, qwen3-coder; not codeqwen1.5
    (("starcoder2",), _STARCODER2),
    (("codellama",), _CODELLAMA),
    (("code-llama",), _CODELLAMA),
    (("deepseek", "coder"), _DEEPSEEK),
    (("codegemma",), _CODEGEMMA),
    (("codestral",), _CODESTRAL),
    (("codeqwen",), _STARCODER),
    (("starcoder",), _STARCODER),
    (("stable-code",), _STARCODER),
    (("granite", "code"), _STARCODER),
)


def template_for_model(model: str, override: Template | None = None) -> FimTemplate:
    """Return the user's template when set, else the table entry matching ``model``, else the fallback."""
    if override is not None:
        return FimTemplate(
            name="custom",
            prefix=override.prefix,
            suffix=override.suffix,
            middle=override.middle,
            stop=tuple(override.stop),
            order=override.order,
        )
    name = model.lower()
    for needles, template in TEMPLATES:
        if all(needle in name for needle in needles):
            return template
    return FALLBACK_TEMPLATE


def format_snippets_as_comments(snippets: Sequence[Snippet], language_id: str) -> str:
    """Render snippets as line comments, each headed by ``Path: <file>``; empty when there are none."""
    comment = line_comment(language_id)
    lines: list[str] = []
    for snippet in snippets:
        lines.append(f"{comment} Path: {snippet.path}")
        lines.extend(f"{comment} {line}" if line.strip() else comment for line in snippet.text.splitlines())
        lines.append(comment)
    if lines:
        lines[-1] = ""  # the last separator becomes the newline before the code
    return "\n".join(lines)


def render_prompt(
    template: FimTemplate,
    prefix: str,
    suffix: str,
    snippets: Sequence[Snippet] = (),
    filename: str = "",
    *,
    language_id: str | None = None,
    repo_name: str = "",
) -> str:
    """Render a complete raw FIM prompt, with ``snippets`` in the template's multi-file format."""
    style = template.snippet_style if snippets else "comments"
    if style == "qwen_repo":
        head = f"<|repo_name|>{repo_name}\n" if repo_name else ""
        files = "".join(f"<|file_sep|>{s.path}\n{_with_newline(s.text)}" for s in snippets)
        current = f"<|file_sep|>{filename}\n" if filename else ""
        return head + files + current + _order(template, prefix, suffix)
    if style == "starcoder2_repo":
        head = f"<repo_name>{repo_name}" if repo_name else ""
        files = "".join(f"<file_sep>{s.path}\n{_with_newline(s.text)}" for s in snippets)
        name = f"{filename}\n" if filename else ""
        fim = f"{template.prefix}{name}{prefix}{template.suffix}{suffix}{template.middle}"
        return f"{head}{files}<file_sep>{fim}"
    if snippets:
        if language_id is None:
            info = language_for_path(filename)
            language_id = info.name if info else ""
        prefix = format_snippets_as_comments(snippets, language_id) + prefix
    return _order(template, prefix, suffix)


def _order(template: FimTemplate, prefix: str, suffix: str) -> str:
    if template.order == "spm":
        return f"{template.suffix}{suffix}{template.prefix}{prefix}{template.middle}"
    return f"{template.prefix}{prefix}{template.suffix}{suffix}{template.middle}"


def _with_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"
