"""The workspace walker: ignore files, the secrets deny list, skipped files and their counts."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from cube_lsp.search import files
from cube_lsp.search.files import WalkOptions, admits, is_secret, read_source, walk_workspace
from cube_lsp.search.types import SkipReason, SourceFile


def _write(root: Path, rel: str, content: str | bytes = "x = 1\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _paths(root: Path) -> list[str]:
    return [file.path for file in walk_workspace(root).files]


def _source(root: Path, rel: str) -> SourceFile:
    return next(file for file in walk_workspace(root).files if file.path == rel)


def test_empty_workspace(tmp_path: Path) -> None:
    result = walk_workspace(tmp_path)
    assert result.files == []
    assert result.skipped == Counter()


def test_files_are_sorted_with_their_language(tmp_path: Path) -> None:
    for rel in ("b.py", "a/z.go", "a.txt", "README.md", "a/b/c.rs", "lib.kt"):
        _write(tmp_path, rel)
    result = walk_workspace(tmp_path)
    assert [(f.path, f.language) for f in result.files] == [
        ("README.md", None),
        ("a.txt", None),
        ("a/b/c.rs", "rust"),
        ("a/z.go", "go"),
        ("b.py", "python"),
        ("lib.kt", "kotlin"),
    ]
    assert all(f.size == 6 and f.mtime_ns > 0 for f in result.files)


def test_unknown_kinds_are_left_out_without_a_count(tmp_path: Path) -> None:
    _write(tmp_path, "logo.png", b"\x89PNG")
    _write(tmp_path, "archive.tar.gz", b"\x1f\x8b")
    _write(tmp_path, "main.py")
    result = walk_workspace(tmp_path)
    assert _paths(tmp_path) == ["main.py"]
    assert result.skipped == Counter()


def test_nested_gitignore_applies_to_its_subtree(tmp_path: Path) -> None:
    _write(tmp_path, ".gitignore", "*.txt\nbuild-output/\n")
    _write(tmp_path, "sub/.gitignore", "local_*.py\n!keep.txt\n")
    for rel in ("a.py", "notes.txt", "sub/keep.txt", "sub/drop.txt", "sub/local_x.py", "other/local_x.py"):
        _write(tmp_path, rel)
    _write(tmp_path, "build-output/gen.py")
    result = walk_workspace(tmp_path)
    assert [f.path for f in result.files] == ["a.py", "other/local_x.py", "sub/keep.txt"]
    # notes.txt, sub/drop.txt, sub/local_x.py and the build-output directory (once, not per file).
    assert result.skipped == Counter({SkipReason.IGNORED: 4})


def test_git_info_exclude_is_honoured(tmp_path: Path) -> None:
    _write(tmp_path, ".git/info/exclude", "scratch.py\n")
    _write(tmp_path, ".git/config", "[core]\n")
    _write(tmp_path, "scratch.py")
    _write(tmp_path, "main.py")
    result = walk_workspace(tmp_path)
    assert _paths(tmp_path) == ["main.py"]
    assert result.skipped == Counter({SkipReason.IGNORED: 1})  # .git itself is not counted


def test_cubeignore_re_includes_and_excludes_more(tmp_path: Path) -> None:
    _write(tmp_path, ".gitignore", "generated.py\n*.md\n")
    _write(tmp_path, ".cubeignore", "!generated.py\ndocs/\nfixtures/*.json\n")
    _write(tmp_path, "pkg/.cubeignore", "!NOTES.md\n")
    for rel in ("generated.py", "main.py", "docs/guide.rst", "fixtures/a.json", "README.md", "pkg/NOTES.md"):
        _write(tmp_path, rel)
    assert _paths(tmp_path) == ["generated.py", "main.py", "pkg/NOTES.md"]


def test_cubeignore_can_re_include_a_vendored_directory(tmp_path: Path) -> None:
    _write(tmp_path, ".cubeignore", "!vendor/\n")
    _write(tmp_path, "vendor/lib.go", "package lib\n")
    _write(tmp_path, "node_modules/x/index.js")
    result = walk_workspace(tmp_path)
    assert [f.path for f in result.files] == ["vendor/lib.go"]
    assert result.skipped == Counter({SkipReason.VENDORED: 1})


def test_secrets_are_denied_even_when_cubeignore_re_includes_them(tmp_path: Path) -> None:
    _write(tmp_path, ".cubeignore", "!.env\n!key.pem\n!.ssh/\n")
    secrets = [".env", "config/.env.local", "key.pem", "id_rsa", "id_ed25519.pub", ".ssh/config"]
    secrets += ["credentials.json", "secrets.yaml", "my_token.json", "infra/prod.tfstate", ".aws/credentials"]
    for rel in secrets:
        _write(tmp_path, rel, "SECRET=1\n")
    _write(tmp_path, "id_test.py")
    _write(tmp_path, "settings.py")
    result = walk_workspace(tmp_path)
    assert [f.path for f in result.files] == ["id_test.py", "settings.py"]
    # The directories .ssh and .aws count once each.
    assert result.skipped == Counter({SkipReason.SECRET: len(secrets)})


@pytest.mark.parametrize(
    ("rel", "secret"),
    [
        (".env", True),
        ("a/b/.env.production", True),
        ("deploy/tls/server.KEY", True),
        ("home/.ssh/known_hosts", True),
        ("id_ecdsa", True),
        ("src/id_utils.py", False),
        ("service-account-prod.json", True),
        ("src/environment.py", False),
        ("tokenizer.py", False),
        ("docs/keys.md", False),
    ],
)
def test_is_secret(rel: str, secret: bool) -> None:
    assert is_secret(rel) is secret


def test_extra_deny_extends_the_list(tmp_path: Path) -> None:
    for rel in ("q.sql", "main.py", "private/notes.md"):
        _write(tmp_path, rel)
    options = WalkOptions(extra_deny=("*.sql", "private/"))
    result = walk_workspace(tmp_path, options)
    assert [f.path for f in result.files] == ["main.py"]
    assert result.skipped == Counter({SkipReason.SECRET: 2})
    assert is_secret(".env", ("*.sql",))  # the built-in list still applies


def test_extra_deny_refuses_a_negation() -> None:
    with pytest.raises(ValueError, match="negation"):
        WalkOptions(extra_deny=("*.sql", "!.env"))


def test_vendored_and_generated_files_are_skipped(tmp_path: Path) -> None:
    for rel in ("node_modules/a/index.js", "dist/app.js", "src/__pycache__/m.py", "src/.venv/lib.py"):
        _write(tmp_path, rel)
    for rel in ("static/app.min.js", "static/app.js.map", "package-lock.json", "Cargo.lock", "src/main.py"):
        _write(tmp_path, rel)
    result = walk_workspace(tmp_path)
    assert [f.path for f in result.files] == ["src/main.py"]
    # app.min.js and package-lock.json; the .map and .lock files were never candidates (unknown kinds).
    assert result.skipped == Counter({SkipReason.VENDORED: 4, SkipReason.GENERATED: 2})


def test_generated_marker_is_found_by_read_source(tmp_path: Path) -> None:
    _write(tmp_path, "api.pb.gw.go", "// Code generated by protoc-gen-go. DO NOT EDIT.\npackage api\n")
    _write(tmp_path, "schema.py", "# @generated by tool\nX = 1\n")
    _write(tmp_path, "hand.py", "# written by hand\nX = 1\n")
    assert read_source(tmp_path, _source(tmp_path, "api.pb.gw.go")) is SkipReason.GENERATED
    assert read_source(tmp_path, _source(tmp_path, "schema.py")) is SkipReason.GENERATED
    assert read_source(tmp_path, _source(tmp_path, "hand.py")) == "# written by hand\nX = 1\n"


def test_binary_with_a_source_extension(tmp_path: Path) -> None:
    _write(tmp_path, "blob.py", b"import os\n\x00\x01\x02binary")
    assert read_source(tmp_path, _source(tmp_path, "blob.py")) is SkipReason.BINARY


def test_invalid_utf8(tmp_path: Path) -> None:
    _write(tmp_path, "latin.py", "s = 'café'\n".encode("latin-1"))
    assert read_source(tmp_path, _source(tmp_path, "latin.py")) is SkipReason.NOT_UTF8


def test_line_over_the_limit(tmp_path: Path) -> None:
    _write(tmp_path, "bundle.js", "var a = 1;\n" + "x" * 1001 + "\n")
    _write(tmp_path, "ok.js", "var a = 1;\n" + "x" * 1000 + "\n")
    assert read_source(tmp_path, _source(tmp_path, "bundle.js")) is SkipReason.LONG_LINES
    assert isinstance(read_source(tmp_path, _source(tmp_path, "ok.js")), str)


def test_a_50_mb_file_is_skipped_from_its_size_without_reading(tmp_path: Path, monkeypatch) -> None:
    big = _write(tmp_path, "huge.min.txt", "")
    os.truncate(big, 50 * 1024 * 1024)  # sparse: no 50 MB written to disk
    _write(tmp_path, "main.py")

    def no_open(*args, **kwargs):
        raise AssertionError("the walk must not open files")

    monkeypatch.setattr(files.os, "open", no_open)
    result = walk_workspace(tmp_path)
    assert [f.path for f in result.files] == ["main.py"]
    assert result.skipped == Counter({SkipReason.TOO_LARGE: 1})


def test_read_source_refuses_a_file_that_grew_past_the_limit(tmp_path: Path) -> None:
    _write(tmp_path, "grows.py", "x = 1\n")
    source = _source(tmp_path, "grows.py")
    _write(tmp_path, "grows.py", "x = 1\n" * 100)
    assert read_source(tmp_path, source, WalkOptions(max_file_bytes=64)) is SkipReason.TOO_LARGE


def test_symlink_loop_does_not_hang(tmp_path: Path) -> None:
    _write(tmp_path, "pkg/mod.py")
    os.symlink("..", tmp_path / "pkg" / "loop")
    os.symlink(tmp_path / "pkg", tmp_path / "pkg_alias")
    result = walk_workspace(tmp_path)
    assert [f.path for f in result.files] == ["pkg/mod.py"]
    assert result.skipped == Counter({SkipReason.SYMLINK: 2})


def test_symlinked_file_is_indexed_once_under_its_own_path(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _write(outside, "secret_plans.py")
    root = tmp_path / "ws"
    _write(root, "real.py")
    os.symlink(root / "real.py", root / "link.py")
    os.symlink(outside / "secret_plans.py", root / "plans.py")
    result = walk_workspace(root)
    assert [f.path for f in result.files] == ["real.py"]
    assert result.skipped == Counter({SkipReason.SYMLINK: 2})
    assert admits(root, "link.py") is SkipReason.SYMLINK


def test_read_source_does_not_follow_a_symlink_swapped_in_after_the_walk(tmp_path: Path) -> None:
    _write(tmp_path, "a.py")
    _write(tmp_path, "elsewhere/.env", "TOKEN=1\n")
    source = _source(tmp_path, "a.py")
    (tmp_path / "a.py").unlink()
    os.symlink(tmp_path / "elsewhere" / ".env", tmp_path / "a.py")
    assert read_source(tmp_path, source) is SkipReason.UNREADABLE


def test_unreadable_directory_is_counted(tmp_path: Path) -> None:
    _write(tmp_path, "locked/inner.py")
    _write(tmp_path, "main.py")
    locked = tmp_path / "locked"
    locked.chmod(0)
    try:
        result = walk_workspace(tmp_path)
        if os.access(locked, os.R_OK):
            # Root (as in CI here) reads through chmod 000, so the permission cannot be observed; the
            # next test makes scandir fail instead.
            pytest.skip("running as root: chmod 000 does not stop reading")
        assert [f.path for f in result.files] == ["main.py"]
        assert result.skipped == Counter({SkipReason.UNREADABLE: 1})
    finally:
        locked.chmod(0o755)


def test_scandir_failure_and_vanished_files_are_counted_not_raised(tmp_path: Path, monkeypatch) -> None:
    _write(tmp_path, "locked/inner.py")
    _write(tmp_path, "gone.py")
    _write(tmp_path, "main.py")
    real_scandir = os.scandir

    class VanishingEntry:
        def __init__(self, entry: os.DirEntry) -> None:
            self._entry = entry
            self.name, self.path = entry.name, entry.path

        def is_symlink(self) -> bool:
            return self._entry.is_symlink()

        def is_dir(self, follow_symlinks: bool = True) -> bool:
            return self._entry.is_dir(follow_symlinks=follow_symlinks)

        def stat(self, follow_symlinks: bool = True) -> os.stat_result:
            if self.name == "gone.py":
                raise FileNotFoundError(self.path)
            return self._entry.stat(follow_symlinks=follow_symlinks)

    class Scan:
        def __init__(self, path) -> None:
            if Path(path).name == "locked":
                raise PermissionError(path)
            self._scan = real_scandir(path)

        def __enter__(self):
            return [VanishingEntry(entry) for entry in self._scan]

        def __exit__(self, *exc) -> None:
            self._scan.close()

    monkeypatch.setattr(files.os, "scandir", Scan)
    result = walk_workspace(tmp_path)
    assert [f.path for f in result.files] == ["main.py"]
    assert result.skipped == Counter({SkipReason.UNREADABLE: 2})


def test_a_file_deleted_before_reading_is_unreadable(tmp_path: Path) -> None:
    _write(tmp_path, "gone.py")
    source = _source(tmp_path, "gone.py")
    (tmp_path / "gone.py").unlink()
    assert read_source(tmp_path, source) is SkipReason.UNREADABLE


def test_admits_applies_the_walk_rules_to_one_path(tmp_path: Path) -> None:
    _write(tmp_path, ".gitignore", "ignored/\n")
    _write(tmp_path, "sub/.gitignore", "*.tmp.py\n")
    for rel in ("src/main.py", "ignored/a.py", "node_modules/x.js", "sub/a.tmp.py", ".env", "image.png"):
        _write(tmp_path, rel)
    _write(tmp_path, "big.py", "x" * 100)
    assert admits(tmp_path, "src/main.py") is None
    assert admits(tmp_path, "ignored/a.py") is SkipReason.IGNORED
    assert admits(tmp_path, "node_modules/x.js") is SkipReason.VENDORED
    assert admits(tmp_path, "sub/a.tmp.py") is SkipReason.IGNORED
    assert admits(tmp_path, ".env") is SkipReason.SECRET
    assert admits(tmp_path, "image.png") is SkipReason.IGNORED  # not a kind of file we index
    assert admits(tmp_path, "big.py", WalkOptions(max_file_bytes=10)) is SkipReason.TOO_LARGE
    assert admits(tmp_path, "missing.py") is SkipReason.UNREADABLE
    assert admits(tmp_path, "../outside.py") is SkipReason.IGNORED
