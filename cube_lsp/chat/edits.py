"""Turn a chat model's answer to a code action into the smallest safe edit of the selection.

Pure functions, no LSP and no HTTP. The pipeline in :func:`apply_answer`:

1. :func:`extract_code` finds the code in the answer (fenced blocks, several blocks, a truncated last
   block, or a bare answer with no prose).
2. An answer that is the whole document is refused, even when only the selection changed in it.
3. Lines that only echo the unchanged context just before or after the selection are dropped.
4. An answer that still rewrites code outside the selection (a modified copy of the neighbouring lines)
   is refused: applying it inside the selection would duplicate that code.
5. :func:`reindent` moves the code to the selection's indentation, in the document's tabs or spaces.
6. The new text takes the document's line endings and the selection's trailing-newline shape, and the
   edit is trimmed of the prefix and suffix it shares with the selection.

Block choice rule: blocks tagged with the target language or one of its aliases win; failing those,
untagged blocks; for TypeScript, then blocks tagged JavaScript.
Blocks tagged with any other language (``bash``, ``console``, ``text`` output, ...) are never applied.
Among the winners the longest is chosen, except that an unterminated last block (the stream was cut off)
is chosen whenever it is a candidate, so that a truncated answer is refused rather than half-applied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

from cube_lsp.languages import parse

__all__ = [
    "EditResult",
    "ExtractedCode",
    "TextEdit",
    "apply_answer",
    "canonical_language",
    "extract_code",
    "place_code",
    "reindent",
]

_ALIASES: dict[str, str] = {
    "py": "python",
    "py3": "python",
    "python3": "python",
    "ts": "typescript",
    "tsx": "typescript",
    "typescriptreact": "typescript",
    "golang": "go",
    "rs": "rust",
    "js": "javascript",
    "jsx": "javascript",
    "mjs": "javascript",
    "cjs": "javascript",
    "javascriptreact": "javascript",
    "md": "markdown",
}
# A block tagged with a language in this family is accepted after exact matches and untagged blocks.
_COMPATIBLE: dict[str, str] = {"typescript": "javascript"}
# With no target language, blocks with these tags are output or shell sessions, never code to apply.
_NOT_CODE_TAGS = frozenset(
    {"bash", "sh", "shell", "zsh", "console", "terminal", "text", "txt", "plaintext", "output", "log"}
)

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_PROSE_TOKEN = re.compile(r"^(?:[A-Za-z][A-Za-z'’-]*[,.:;!?]?|`[^`]+`[,.:;!?]?|\d+[,.]?)$")
_LEADING_WS = re.compile(r"^[ \t]*")

# How many context lines around the selection are compared for echoes and rewrites.
_CONTEXT_LINES = 3
# The longest echo (in lines) looked for; a model echoes a signature or a decorator, not a page.
_MAX_ECHO = 5
# Lines are compared for similarity up to this many characters (SequenceMatcher is quadratic).
_COMPARED_CHARS = 300
_SIMILAR = 0.7


@dataclass(frozen=True)
class ExtractedCode:
    """The code chosen from an answer; ``blocks`` counts every fenced block found (0 if unfenced)."""

    text: str
    language: str | None
    complete: bool
    blocks: int


@dataclass(frozen=True)
class TextEdit:
    """Replace ``document[start:end]`` with ``new_text`` (str offsets into the document)."""

    start: int
    end: int
    new_text: str


@dataclass(frozen=True)
class EditResult:
    """Either an ``edit`` or a user-facing ``reason`` for applying nothing; ``code`` is stable for tests."""

    edit: TextEdit | None
    reason: str | None
    code: str | None = None

    def __post_init__(self) -> None:
        if (self.edit is None) == (self.reason is None):
            raise ValueError("EditResult needs exactly one of edit and reason")


@dataclass(frozen=True)
class _Block:
    text: str
    tag: str | None
    complete: bool


def canonical_language(name: str | None) -> str | None:
    """Return the canonical, lower-cased name of a language id or fence tag (``py`` -> ``python``)."""
    if not name:
        return None
    lowered = name.strip().lower()
    return _ALIASES.get(lowered, lowered)


# --- extraction ---------------------------------------------------------------------------------------


def _fence_tag(info: str) -> str | None:
    word = re.split(r"[\s:{,]", info.strip(), maxsplit=1)[0]
    return word.lower() or None


def _strip_indent(line: str, width: int) -> str:
    """Remove up to ``width`` leading whitespace characters (the opening fence's indentation)."""
    i = 0
    while i < width and i < len(line) and line[i] in " \t":
        i += 1
    return line[i:]


def _is_partial_fence(line: str, char: str, length: int) -> bool:
    stripped = line.strip()
    return 0 < len(stripped) < length and set(stripped) == {char}


def _find_blocks(answer: str) -> list[_Block]:
    """Fenced blocks as in CommonMark: a closing fence uses the same character, at least as many times."""
    lines = answer.split("\n")
    blocks: list[_Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None or (match["fence"][0] == "`" and "`" in match["info"]):
            i += 1
            continue
        char, length, indent = match["fence"][0], len(match["fence"]), len(match["indent"])
        body: list[str] = []
        i += 1
        complete = False
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            if (
                closing is not None
                and closing["fence"][0] == char
                and len(closing["fence"]) >= length
                and not closing["info"].strip()
            ):
                complete = True
                i += 1
                break
            body.append(_strip_indent(lines[i], indent))
            i += 1
        if not complete:
            while body and not body[-1].strip():
                body.pop()
            if body and _is_partial_fence(body[-1], char, length):
                body.pop()
        blocks.append(_Block("\n".join(body), _fence_tag(match["info"]), complete))
    return blocks


def _candidates(blocks: list[_Block], language_id: str | None) -> list[_Block]:
    target = canonical_language(language_id)
    if target is None:
        return [b for b in blocks if b.tag is None or b.tag not in _NOT_CODE_TAGS]
    tiers = [
        [b for b in blocks if b.tag is not None and canonical_language(b.tag) == target],
        [b for b in blocks if b.tag is None],
    ]
    if target in _COMPATIBLE:
        tiers.append([b for b in blocks if canonical_language(b.tag) == _COMPATIBLE[target]])
    return next((tier for tier in tiers if tier), [])


def _is_prose_line(line: str) -> bool:
    """Tell whether a line reads as an English sentence: words only, capitalised, sentence-like end."""
    tokens = line.split()
    if not tokens or not line.strip()[0].isupper():
        return False
    if not all(_PROSE_TOKEN.match(t) for t in tokens):
        return False
    return line.rstrip()[-1] in ".:!?" or len(tokens) >= 5


def _has_prose(answer: str) -> bool:
    """Tell whether a line outside comments, docstrings and block comments reads as prose."""
    in_block: str | None = None
    for raw in answer.split("\n"):
        line = raw.strip()
        if in_block is not None:
            if in_block in line:
                in_block = None
            continue
        for opener, closer in (('"""', '"""'), ("'''", "'''"), ("/*", "*/")):
            if line.startswith(opener):
                if closer not in line[len(opener) :]:
                    in_block = closer
                break
        else:
            if line.startswith(("#", "//", "*", "--")):
                continue
            if _is_prose_line(line):
                return True
    return False


def extract_code(answer: str, language_id: str | None) -> ExtractedCode | None:
    """Return the code to apply from ``answer``, or ``None`` when it holds none (see module docstring)."""
    answer = answer.replace("\r\n", "\n")
    blocks = _find_blocks(answer)
    if not blocks:
        if not answer.strip() or _has_prose(answer):
            return None
        return ExtractedCode(answer, None, True, 0)
    candidates = _candidates(blocks, language_id)
    if not candidates:
        return None
    truncated = [b for b in candidates if not b.complete]
    chosen = truncated[-1] if truncated else max(candidates, key=lambda b: len(b.text.strip()))
    return ExtractedCode(chosen.text, chosen.tag, chosen.complete, len(blocks))


# --- indentation --------------------------------------------------------------------------------------


def _columns(whitespace: str, tab_size: int) -> int:
    col = 0
    for ch in whitespace:
        col = (col // tab_size + 1) * tab_size if ch == "\t" else col + 1
    return col


def _render(columns: int, use_tabs: bool, tab_size: int) -> str:
    if use_tabs:
        return "\t" * (columns // tab_size) + " " * (columns % tab_size)
    return " " * columns


def reindent(code: str, target_indent: str, tab_size: int = 4, use_tabs: bool | None = None) -> str:
    """Move ``code`` to ``target_indent``, keeping its relative indentation.

    The common indentation is removed and ``target_indent`` put before every non-blank line; blank lines
    become empty. Relative indentation is written with tabs when ``use_tabs`` is true (spaces are
    converted, ``tab_size`` columns to a tab) and with spaces when false. ``None`` infers the style from
    ``target_indent`` (a tab means tabs), and when that is empty keeps each line's own style.
    """
    if use_tabs is None and target_indent:
        use_tabs = "\t" in target_indent
    lines = code.splitlines(keepends=True)
    split = [(line.rstrip("\r\n"), line[len(line.rstrip("\r\n")) :]) for line in lines]
    widths = [
        _columns(_LEADING_WS.match(text).group(), tab_size)  # type: ignore[union-attr]
        for text, _ in split
        if text.strip()
    ]
    common = min(widths, default=0)
    out: list[str] = []
    for text, ending in split:
        if not text.strip():
            out.append(ending)
            continue
        lead = _LEADING_WS.match(text).group()  # type: ignore[union-attr]
        relative = _columns(lead, tab_size) - common
        tabs = use_tabs if use_tabs is not None else "\t" in lead
        out.append(target_indent + _render(relative, tabs, tab_size) + text[len(lead) :] + ending)
    return "".join(out)


def _document_uses_tabs(document: str, language_id: str) -> bool:
    tabbed = len(re.findall(r"(?m)^\t+\S", document))
    spaced = len(re.findall(r"(?m)^ {2,}\S", document))
    if tabbed == spaced == 0:
        return canonical_language(language_id) == "go"  # gofmt indents with tabs
    return tabbed > spaced


# --- echoes and rewrites ------------------------------------------------------------------------------


def _balance(lines: list[str]) -> int:
    text = "".join(lines)
    return sum(text.count(c) for c in "([{") - sum(text.count(c) for c in ")]}")


def _matching_run(code: list[str], context: list[str], *, at_start: bool) -> int:
    """Count the most lines at the start (or end) of ``code`` equal, stripped, to the nearest context."""
    best = 0
    for k in range(1, min(len(code) - 1, len(context), _MAX_ECHO) + 1):
        mine = code[:k] if at_start else code[-k:]
        theirs = context[-k:] if at_start else context[:k]
        if [m.strip() for m in mine] == [t.strip() for t in theirs]:
            best = k
    return best


def _drop_echo(code: list[str], before: list[str], after: list[str], selection: list[str]) -> list[str]:
    """Drop leading/trailing lines that repeat unchanged context, when that keeps brackets balanced.

    Dropping is only done when what remains has the selection's bracket balance and the dropped lines
    hold a word (a lone ``}`` that closes the code's own block must stay).
    """
    head = _matching_run(code, before, at_start=True)
    tail = _matching_run(code, after, at_start=False)
    if head and [c.strip() for c in code[:head]] == [s.strip() for s in selection[:head]]:
        head = 0  # the selection itself starts with those lines
    if tail and [c.strip() for c in code[-tail:]] == [s.strip() for s in selection[-tail:]]:
        tail = 0
    wanted = _balance(selection)
    for h, t in ((head, tail), (head, 0), (0, tail)):
        if not (h or t):
            continue
        kept = code[h : len(code) - t]
        dropped = code[:h] + code[len(code) - t :]
        if kept and _balance(kept) == wanted and any(re.search(r"\w", d) for d in dropped):
            return kept
    return code


def _is_whole_document(code: list[str], before: list[str], after: list[str], selection: list[str]) -> bool:
    """Tell whether the code spans the document: its first and last lines, and more than one line outside.

    Such an answer is refused even when dropping the echoed parts would leave a plausible edit: a model
    that rewrote the whole file may have changed anything in it.
    """
    document = [line.strip() for line in before + selection + after if re.search(r"\w", line)]
    mine = [line.strip() for line in code if re.search(r"\w", line)]
    if not document or not mine or (mine[0], mine[-1]) != (document[0], document[-1]):
        return False
    outside = {line.strip() for line in before + after} - {line.strip() for line in selection}
    return sum(1 for line in mine if line in outside) >= 2


def _similar(a: str, b: str) -> float:
    return SequenceMatcher(None, a.strip()[:_COMPARED_CHARS], b.strip()[:_COMPARED_CHARS]).ratio()


def _rewrites_outside(code: list[str], before: list[str], after: list[str], selection: list[str]) -> bool:
    """Tell whether the code holds a (modified) copy of the lines around the selection."""
    words = [line for line in code if re.search(r"\w", line)]
    if not words:
        return False
    sel_words = [line for line in selection if re.search(r"\w", line)]
    near_before = [b for b in before if re.search(r"\w", b)][-_CONTEXT_LINES:]
    near_after = [a for a in after if re.search(r"\w", a)][:_CONTEXT_LINES]
    for line, near, own in ((words[0], near_before, sel_words[:1]), (words[-1], near_after, sel_words[-1:])):
        closest = max((_similar(line, n) for n in near), default=0.0)
        if closest >= _SIMILAR and closest > max((_similar(line, s) for s in own), default=0.0):
            return True
    inside = {s.strip() for s in selection}
    outside = {o.strip() for o in before + after if len(o.strip()) >= 6 and re.search(r"\w", o)} - inside
    return sum(1 for line in code if line.strip() in outside) >= 2


# --- the edit -----------------------------------------------------------------------------------------


def _refuse(reason: str, code: str) -> EditResult:
    return EditResult(None, reason, f"chat.{code}")


def _smallest_edit(document: str, start: int, end: int, new_text: str) -> TextEdit:
    old = document[start:end]
    prefix = 0
    limit = min(len(old), len(new_text))
    while prefix < limit and old[prefix] == new_text[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[len(old) - 1 - suffix] == new_text[len(new_text) - 1 - suffix]:
        suffix += 1
    return TextEdit(start + prefix, end - suffix, new_text[prefix : len(new_text) - suffix])


def _place(code: list[str], document: str, start: int, selection: list[str], uses_tabs: bool) -> list[str]:
    """Re-indent code lines to the selection: its first line's indentation, or mid-line rules."""
    line_start = document.rfind("\n", 0, start) + 1
    line_end = document.find("\n", start)
    first_line = document[line_start : line_end if line_end >= 0 else len(document)].rstrip("\r")
    indent = _LEADING_WS.match(first_line).group()  # type: ignore[union-attr]
    prefix = document[line_start:start]
    if not prefix.strip():
        placed = reindent("\n".join(code), indent, use_tabs=uses_tabs).split("\n")
        placed[0] = placed[0][len(prefix) :] if placed[0].startswith(prefix) else placed[0].lstrip()
        return placed
    # The selection starts mid-line: the first line follows the text before it; continuation lines
    # take the indentation the selection's own continuation lines had.
    rest_sel = [s for s in selection[1:] if s.strip()]
    cont = min((_LEADING_WS.match(s).group() for s in rest_sel), key=len, default=indent)  # type: ignore[union-attr]
    rest = reindent("\n".join(code[1:]), cont, use_tabs=uses_tabs).split("\n") if len(code) > 1 else []
    return [code[0].lstrip(), *rest]


def apply_answer(document: str, start: int, end: int, answer: str, language_id: str) -> EditResult:
    """Return the smallest edit putting the answer's code in place of ``document[start:end]``, or refuse."""
    if not 0 <= start <= end <= len(document):
        return _refuse("the selection is outside the document", "bad_range")
    if end > start and document[end - 1] != "\n" and "\n" in document[end:]:
        # A selection ending inside a line (Neovim's line ranges end one character into the next line)
        # ends with that line: the answer's last line replaces the whole of it, never half of it.
        end = document.index("\n", end) + 1
    if not answer.strip():
        return _refuse("the answer is empty", "empty_answer")
    extracted = extract_code(answer, language_id)
    if extracted is None:
        return _refuse("the answer holds no code block", "no_code")
    if not extracted.complete:
        return _refuse("the answer was cut off", "truncated")
    return place_code(document, start, end, extracted.text, language_id)


def place_code(document: str, start: int, end: int, code_text: str, language_id: str) -> EditResult:
    """Return the smallest edit putting ``code_text`` in place of ``document[start:end]``, or refuse.

    The second half of :func:`apply_answer`, for code the user picked themselves (a chat panel's
    "Apply" on one block): the same re-indenting and the same refusal of code that rewrites what lies
    outside the selection.
    """
    if not 0 <= start <= end <= len(document):
        return _refuse("the selection is outside the document", "bad_range")
    if end > start and document[end - 1] != "\n" and "\n" in document[end:]:
        end = document.index("\n", end) + 1
    code = code_text.replace("\r\n", "\n").split("\n")
    while code and not code[0].strip():
        code.pop(0)
    while code and not code[-1].strip():
        code.pop()
    if not code:
        return _refuse("the code in the answer is empty", "empty_code")

    eol = "\r\n" if "\r\n" in document else "\n"
    text = document.replace("\r\n", "\n")
    # Offsets move when CRLF collapses to LF; map them into the normalised text.
    n_start = start - document.count("\r\n", 0, start)
    n_end = end - document.count("\r\n", 0, end)
    selected = text[n_start:n_end]
    selection = selected.split("\n")
    if selected.endswith("\n"):
        selection.pop()
    line_start = text.rfind("\n", 0, n_start) + 1
    before = [b for b in text[:line_start].split("\n")[:-1] if b.strip()]
    after_start = n_end
    if not selected.endswith("\n"):
        newline = text.find("\n", n_end)
        after_start = newline + 1 if newline >= 0 else len(text)
    after = [a for a in text[after_start:].split("\n") if a.strip()]

    if _is_whole_document(code, before, after, selection):
        return _refuse("the answer changes code outside the selection", "outside_selection")
    code = _drop_echo(code, before, after, selection)
    if _rewrites_outside(code, before, after, selection):
        return _refuse("the answer changes code outside the selection", "outside_selection")

    placed = _place(code, text, n_start, selection, _document_uses_tabs(text, language_id))
    new_text = eol.join(placed) + (eol if selected.endswith("\n") else "")
    if new_text == document[start:end]:
        return _refuse("the answer makes no change", "no_change")
    if _breaks_syntax(document, document[:start] + new_text + document[end:], language_id):
        return _refuse("the answer's code does not parse where it would go", "syntax_error")
    return EditResult(_smallest_edit(document, start, end, new_text), None)


def _breaks_syntax(before: str, after: str, language_id: str) -> bool:
    """Tell whether the edited document has syntax errors (tree-sitter) that the document had not.

    A model that answers with broken or garbled code must not get it into the file; a document that
    was already broken (mid-edit) keeps the old behaviour. Languages without a grammar are not checked.
    """
    old = parse(language_id, before.encode("utf-8", "surrogatepass"))
    if old is None or old.root_node.has_error:
        return False
    new = parse(language_id, after.encode("utf-8", "surrogatepass"))
    return new is not None and new.root_node.has_error
