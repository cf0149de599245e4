"""Walk a workspace into the files worth indexing, and read one of them safely.

Everything admitted here may be sent to the embedding endpoint, so the rules lean towards leaving out:
``.gitignore`` (nested, and ``.git/info/exclude``), then ``.cubeignore`` (same syntax, wins over
``.gitignore`` both ways), then a built-in deny list for secrets that nothing re-includes. Vendored and
generated trees, large files, minified files, binaries and non-UTF-8 files are skipped and counted by
:class:`SkipReason`. The walk only stats (``os.scandir``); :func:`read_source` reads, decodes and applies
the checks that need the content.

Decisions worth knowing:

- Symlinks are never followed. A link to a file inside the workspace is skipped (counted ``SYMLINK``)
  because its target is walked under its own path, so the file is indexed once; a link out of the
  workspace would leak files the rules never saw. Links to directories are skipped the same way, which
  also makes loops impossible.
- An ignored directory is not entered (as in git), so a pattern cannot re-include a file below an ignored
  directory unless the directory itself is re-included. A pruned directory counts once, not per file.
- ``id_*`` is treated as an SSH key only when the name has no extension of a source or text file we index
  (``id_rsa``, ``id_ed25519.pub`` are secrets; ``id_utils.py`` is source).
- Files of unknown kinds (images, archives, extensions we do not chunk) are left out without a count: they
  were never candidates. :func:`admits` answers ``IGNORED`` for them.
"""

from __future__ import annotations

import os
import stat as stat_module
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

import pathspec

from cube_lsp.languages import language_for_path
from cube_lsp.search.types import SkipReason, SourceFile, WalkResult

__all__ = [
    "DEFAULT_DENY",
    "WalkOptions",
    "admits",
    "is_secret",
    "read_source",
    "walk_workspace",
]

# Secrets: gitignore syntax, matched against the lower-cased path relative to the root.
DEFAULT_DENY: tuple[str, ...] = (
    ".env",
    ".env.*",
    "*.env",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.keystore",
    "*.jks",
    "*.kdbx",
    "*.asc",
    "*.gpg",
    "*.ovpn",
    ".netrc",
    "_netrc",
    ".npmrc",
    ".pypirc",
    ".pgpass",
    ".htpasswd",
    ".git-credentials",
    ".dockercfg",
    ".docker/config.json",
    "credentials*",
    "*token*.json",
    "secrets.*",
    "*.secret",
    "*.secrets",
    "service-account*.json",
    "*.tfstate",
    "*.tfstate.*",
    "*.tfvars",
    ".aws/",
    ".ssh/",
    ".gnupg/",
    ".azure/",
    ".kube/",
    ".vault-token",
)

# Directories never entered: version control metadata (not counted), then vendored or generated trees.
_VCS_DIRS = frozenset({".git", ".hg", ".svn", ".jj"})
_VENDORED_DIRS = frozenset(
    {
        "node_modules",
        "bower_components",
        "jspm_packages",
        "vendor",
        "third_party",
        "third-party",
        "dist",
        "build",
        "target",
        "out",
        "obj",
        "__pycache__",
        ".venv",
        "venv",
        ".tox",
        ".nox",
        ".eggs",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".next",
        ".nuxt",
        ".svelte-kit",
        ".angular",
        ".parcel-cache",
        ".turbo",
        ".gradle",
        ".terraform",
        ".idea",
        ".yarn",
        ".pnpm-store",
        "coverage",
        "htmlcov",
        "site-packages",
        "Pods",
    }
)
_GENERATED_NAMES = frozenset(
    {
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lockb",
        "cargo.lock",
        "poetry.lock",
        "pipfile.lock",
        "uv.lock",
        "pdm.lock",
        "composer.lock",
        "gemfile.lock",
        "go.sum",
        "packages.lock.json",
        "podfile.lock",
    }
)
_GENERATED_SUFFIXES = (
    ".min.js",
    ".min.css",
    ".map",
    ".min.mjs",
    "-min.js",
    ".bundle.js",
    ".pb.go",
    "_pb2.py",
)

# Text files worth indexing besides the source files of languages.py.
_TEXT_EXTENSIONS = frozenset(
    {
        ".md",
        ".markdown",
        ".rst",
        ".txt",
        ".adoc",
        ".toml",
        ".yaml",
        ".yml",
        ".json",
        ".jsonc",
        ".ini",
        ".cfg",
        ".conf",
        ".properties",
        ".sql",
        ".sh",
        ".bash",
        ".zsh",
        ".fish",
        ".ps1",
        ".proto",
        ".graphql",
        ".gql",
        ".html",
        ".htm",
        ".css",
        ".scss",
        ".less",
        ".vue",
        ".svelte",
        ".xml",
        ".gradle",
        ".cmake",
        ".mk",
        ".tf",
        ".hcl",
        ".lua",
        ".swift",
        ".scala",
        ".dart",
        ".ex",
        ".exs",
        ".erl",
        ".hs",
        ".ml",
        ".r",
        ".pl",
        ".pm",
    }
)
_TEXT_NAMES = frozenset(
    {
        "dockerfile",
        "containerfile",
        "makefile",
        "gnumakefile",
        "cmakelists.txt",
        "rakefile",
        "gemfile",
        "jenkinsfile",
        "vagrantfile",
        "procfile",
        "justfile",
        "readme",
        "license",
        "changelog",
    }
)

# "Code generated ... DO NOT EDIT" (Go), "@generated" (Meta tools), "<auto-generated>" (.NET), protoc.
_GENERATED_MARKERS = ("do not edit", "@generated", "<auto-generated", "autogenerated by", "auto-generated by")
_MARKER_LINES = 5
_BINARY_PROBE = 8192


@dataclass(frozen=True)
class WalkOptions:
    """Limits and extra rules of a walk; the defaults suit a source tree."""

    max_file_bytes: int = 1024 * 1024  # larger files are skipped from their stat, never read
    max_line_chars: int = 1000  # a longer line marks a minified or data file (LONG_LINES)
    extra_deny: tuple[str, ...] = ()  # gitignore patterns added to DEFAULT_DENY; negations refused

    def __post_init__(self) -> None:
        for pattern in self.extra_deny:
            if pattern.strip().startswith("!"):
                raise ValueError(
                    f"extra_deny pattern {pattern!r} is a negation: the secrets deny list can only be "
                    "extended, never shrunk; remove the '!' pattern"
                )


def is_secret(rel_path: str, extra_deny: Sequence[str] = ()) -> bool:
    """Return whether a path (relative, POSIX) is on the secrets deny list; nothing re-includes it."""
    lowered = rel_path.lower()
    name = PurePosixPath(lowered).name
    if name.startswith("id_") and not _is_indexable_name(name):
        return True
    if _deny_spec(()).match_file(lowered):
        return True
    if extra_deny:
        spec = _deny_spec(tuple(extra_deny))
        return spec.match_file(rel_path) or spec.match_file(lowered)
    return False


def admits(root: Path, rel_path: str, options: WalkOptions = WalkOptions()) -> SkipReason | None:
    """Return why one file would be left out of the index, or None when the walker would admit it.

    For single events (didSave, didChangeWatchedFiles): applies the same rules as
    :func:`walk_workspace` to ``rel_path`` and its parent directories, from its stat only.
    """
    parts = PurePosixPath(rel_path).parts
    if not parts or ".." in parts or PurePosixPath(rel_path).is_absolute():
        return SkipReason.IGNORED
    rules = _Rules.at_root(root)
    for depth in range(len(parts) - 1):
        dir_rel = "/".join(parts[: depth + 1])
        reason = _dir_reason(rules, dir_rel, parts[depth], options)
        if reason is not None:
            return reason
        try:
            if os.path.islink(root / dir_rel):
                return SkipReason.SYMLINK
        except OSError:
            return SkipReason.UNREADABLE
        rules = rules.descend(root / dir_rel, dir_rel)
    try:
        st = os.lstat(root / rel_path)
    except OSError:
        return SkipReason.UNREADABLE
    if stat_module.S_ISLNK(st.st_mode):
        return SkipReason.SYMLINK
    if not stat_module.S_ISREG(st.st_mode):
        return SkipReason.IGNORED
    reason = _file_reason(rules, rel_path, parts[-1], st.st_size, options)
    if reason is None and not _is_indexable_name(parts[-1].lower()):
        return SkipReason.IGNORED
    return reason


def walk_workspace(root: Path, options: WalkOptions = WalkOptions()) -> WalkResult:
    """Walk ``root`` into the files to index (sorted by path) and the counts of what was skipped."""
    result = WalkResult()
    _walk_dir(root, "", _Rules.at_root(root), options, result)
    result.files.sort(key=lambda file: file.path)
    return result


def read_source(root: Path, file: SourceFile, options: WalkOptions = WalkOptions()) -> str | SkipReason:
    """Read and decode one admitted file, or say why it must be skipped after all.

    Opens without following a symlink (the path may have been swapped since the walk) and reads at most
    one byte over the size limit, so a file that grew is refused without being read whole.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(root / file.path, flags)
    except OSError:
        return SkipReason.UNREADABLE
    try:
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(options.max_file_bytes + 1)
    except OSError:
        return SkipReason.UNREADABLE
    if len(data) > options.max_file_bytes:
        return SkipReason.TOO_LARGE
    if b"\x00" in data[:_BINARY_PROBE]:
        return SkipReason.BINARY
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return SkipReason.NOT_UTF8
    if len(text) > options.max_line_chars and any(
        len(line) > options.max_line_chars for line in text.split("\n")
    ):
        return SkipReason.LONG_LINES
    if _has_generated_marker(text):
        return SkipReason.GENERATED
    return text


def _has_generated_marker(text: str) -> bool:
    head = "\n".join(text.split("\n", _MARKER_LINES)[:_MARKER_LINES]).lower()
    return any(marker in head for marker in _GENERATED_MARKERS)


def _is_indexable_name(lowered_name: str) -> bool:
    if lowered_name in _TEXT_NAMES:
        return True
    suffix = PurePosixPath(lowered_name).suffix
    return suffix in _TEXT_EXTENSIONS or language_for_path(lowered_name) is not None


def language_of(name: str) -> str | None:
    """Return the language id of a file name, as the walker records it (None: plain text)."""
    info = language_for_path(name)
    return info.name if info is not None else None


@lru_cache(maxsize=32)
def _deny_spec(extra: tuple[str, ...]) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines(extra or DEFAULT_DENY)


class _Rules:
    """The ignore files in force at one directory: (base, spec) frames, outermost first."""

    __slots__ = ("cube", "git")

    def __init__(
        self,
        git: tuple[tuple[str, pathspec.GitIgnoreSpec], ...],
        cube: tuple[tuple[str, pathspec.GitIgnoreSpec], ...],
    ) -> None:
        self.git = git
        self.cube = cube

    @classmethod
    def at_root(cls, root: Path) -> _Rules:
        git: list[tuple[str, pathspec.GitIgnoreSpec]] = []
        exclude = _load_spec(root / ".git" / "info" / "exclude")
        if exclude is not None:
            git.append(("", exclude))
        return cls(tuple(git), ()).descend(root, "")

    def descend(self, directory: Path, dir_rel: str) -> _Rules:
        """Return the rules below ``directory``: these plus its own .gitignore and .cubeignore."""
        base = f"{dir_rel}/" if dir_rel else ""
        git, cube = self.git, self.cube
        spec = _load_spec(directory / ".gitignore")
        if spec is not None:
            git = (*git, (base, spec))
        spec = _load_spec(directory / ".cubeignore")
        if spec is not None:
            cube = (*cube, (base, spec))
        return self if (git is self.git and cube is self.cube) else _Rules(git, cube)

    def ignored(self, rel: str, is_dir: bool) -> bool | None:
        """Return True (ignored), False (explicitly kept by a negation) or None (no rule matched).

        .cubeignore decides when one of its patterns matches; otherwise .gitignore does. Within each,
        the deepest file with a matching pattern wins, as in git.
        """
        for frames in (self.cube, self.git):
            verdict = _verdict(frames, rel, is_dir)
            if verdict is not None:
                return verdict
        return None


def _verdict(frames: Iterable[tuple[str, pathspec.GitIgnoreSpec]], rel: str, is_dir: bool) -> bool | None:
    for base, spec in reversed(tuple(frames)):
        sub = rel[len(base) :] + ("/" if is_dir else "")
        include = spec.check_file(sub).include
        if include is not None:
            return include
    return None


def _load_spec(path: Path) -> pathspec.GitIgnoreSpec | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    return pathspec.GitIgnoreSpec.from_lines(lines) if lines else None


def _dir_reason(rules: _Rules, dir_rel: str, name: str, options: WalkOptions) -> SkipReason | None:
    if name in _VCS_DIRS:
        return SkipReason.IGNORED
    if is_secret(dir_rel + "/", options.extra_deny):
        return SkipReason.SECRET
    verdict = rules.ignored(dir_rel, is_dir=True)
    if verdict:
        return SkipReason.IGNORED
    if verdict is None and name in _VENDORED_DIRS:
        return SkipReason.VENDORED
    return None


def _file_reason(rules: _Rules, rel: str, name: str, size: int, options: WalkOptions) -> SkipReason | None:
    if is_secret(rel, options.extra_deny):
        return SkipReason.SECRET
    if rules.ignored(rel, is_dir=False):
        return SkipReason.IGNORED
    lowered = name.lower()
    if lowered in _GENERATED_NAMES or lowered.endswith(_GENERATED_SUFFIXES):
        return SkipReason.GENERATED
    if size > options.max_file_bytes:
        return SkipReason.TOO_LARGE
    return None


def _walk_dir(directory: Path, dir_rel: str, rules: _Rules, options: WalkOptions, result: WalkResult) -> None:
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError:
        result.skipped[SkipReason.UNREADABLE] += 1
        return
    prefix = f"{dir_rel}/" if dir_rel else ""
    for entry in entries:
        name = entry.name
        rel = prefix + name
        try:
            if entry.is_symlink():
                result.skipped[SkipReason.SYMLINK] += 1
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            result.skipped[SkipReason.UNREADABLE] += 1
            continue
        if is_dir:
            if name in _VCS_DIRS:
                continue
            reason = _dir_reason(rules, rel, name, options)
            if reason is not None:
                result.skipped[reason] += 1
                continue
            _walk_dir(Path(entry.path), rel, rules.descend(Path(entry.path), rel), options, result)
            continue
        if not _is_indexable_name(name.lower()):
            # Counted even though never a candidate: the status shows that secrets were held back.
            if is_secret(rel, options.extra_deny):
                result.skipped[SkipReason.SECRET] += 1
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            result.skipped[SkipReason.UNREADABLE] += 1
            continue
        if not stat_module.S_ISREG(st.st_mode):
            continue
        reason = _file_reason(rules, rel, name, st.st_size, options)
        if reason is not None:
            result.skipped[reason] += 1
            continue
        result.files.append(SourceFile(rel, st.st_size, st.st_mtime_ns, language_of(name)))
