"""Issue 8, finding 1: nothing under the stack's data directory is readable by another local user.

The attack: a data directory that already existed as 0755 (made by the user, a deployment tool or a
volume mount) was used as it was, ``auth.db`` was created 0644 under umask 022, and another user read the
token signing key out of it. These tests run `cube-stack up` as a real process under umask 022 and 000,
then look at every file and directory it left, and try to read them as the unprivileged user ``nobody``.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cube_stack.private_files import (
    PrivateFileError,
    create_private_file,
    ensure_private_dir,
    secure_tree,
    write_private,
)
from cube_stack.stack import EmbeddedStack, StackOptions
from tests.support.stack_process import cube_stack_up

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def open_parent() -> Iterator[Path]:
    """A directory every local user can enter, as a home or /srv is (pytest's tmp_path is 0700)."""
    parent = Path(tempfile.mkdtemp(prefix="cube-modes-"))
    parent.chmod(0o755)
    try:
        yield parent
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def modes_under(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(os.lstat(root).st_mode)}
    for current, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(current) / name
            info = os.lstat(path)
            if not stat.S_ISLNK(info.st_mode):
                found[str(path.relative_to(root))] = stat.S_IMODE(info.st_mode)
    return found


def loose(modes: dict[str, int], root: Path) -> dict[str, str]:
    """Entries whose mode gives group or others any access."""
    return {name: f"{mode:04o}" for name, mode in modes.items() if mode & 0o077}


def readable_by_nobody(path: Path) -> bool:
    done = subprocess.run(["cat", str(path)], user="nobody", capture_output=True, timeout=30)
    return done.returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
def test_cube_stack_up_leaves_nothing_readable_by_others(open_parent: Path, umask: int) -> None:
    data_dir = open_parent / "stack"
    data_dir.mkdir(mode=0o755)  # made beforehand by the user or a deployment tool, as in the attack
    data_dir.chmod(0o755)
    with cube_stack_up(data_dir, umask=umask) as running:
        modes = modes_under(data_dir)  # while it runs: the SQLite -wal and -shm files exist now
        names = set(modes)
        assert {"state.json", "client.json", "auth/auth.db", "auth/auth.db-wal", "auth/auth.db-shm"} <= names
        assert loose(modes, data_dir) == {}
        assert all(mode == 0o600 for name, mode in modes.items() if (data_dir / name).is_file())
        assert all(mode == 0o700 for name, mode in modes.items() if (data_dir / name).is_dir())
        if IS_ROOT:
            for name in ("auth/auth.db", "auth/auth.db-wal", "state.json", "client.json"):
                assert not readable_by_nobody(data_dir / name), name
    stderr = running.stderr
    assert "stack.permissions_repaired" in stderr and str(data_dir) in stderr  # the 0755 dir was fixed
    assert loose(modes_under(data_dir), data_dir) == {}


@pytest.mark.slow
@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
async def test_embedded_stack_is_private_without_the_cli_umask(
    open_parent: Path, umask: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The library path does not rely on `cube-stack up` having set a umask."""
    data_dir = open_parent / "stack"
    options = StackOptions(data_dir=data_dir, port=0, auth_port=0, ollama_url=None, argon2_fast=True)
    previous = os.umask(umask)
    try:
        async with EmbeddedStack(options):
            modes = modes_under(data_dir)
    finally:
        os.umask(previous)
    assert "auth/auth.db" in modes
    assert loose(modes, data_dir) == {}


@pytest.mark.slow
def test_an_old_world_readable_database_is_repaired_with_a_warning(open_parent: Path) -> None:
    """Left by a version before this fix: the directory and auth.db 0644 are tightened at start."""
    data_dir = open_parent / "stack"
    with cube_stack_up(data_dir, umask=0o022):
        pass
    (data_dir / "auth" / "auth.db").chmod(0o644)
    (data_dir / "auth").chmod(0o755)
    data_dir.chmod(0o755)
    with cube_stack_up(data_dir, umask=0o022) as running:
        assert loose(modes_under(data_dir), data_dir) == {}
    stderr = running.stderr
    repaired = [line for line in stderr.splitlines() if "stack.permissions_repaired" in line]
    assert any("auth.db was 0644" in line for line in repaired), stderr


def test_ensure_private_dir_creates_and_repairs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    previous = os.umask(0)
    try:
        made = ensure_private_dir(tmp_path / "a" / "b")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    wide = tmp_path / "wide"
    wide.mkdir()
    wide.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="cube_stack.private_files"):
        ensure_private_dir(wide)
    assert stat.S_IMODE(wide.stat().st_mode) == 0o700
    assert [r.getMessage() for r in caplog.records if "permissions_repaired" in r.getMessage()]


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_private_files_are_0600_from_birth(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        create_private_file(tmp_path / "db" / "auth.db")
        write_private(tmp_path / "state.json", "{}\n")
        existing = tmp_path / "old.json"
        existing.write_text("secret")
        existing.chmod(0o666)
        write_private(existing, "new")
    finally:
        os.umask(previous)
    for path in (tmp_path / "db" / "auth.db", tmp_path / "state.json", existing):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert existing.read_text() == "new"
    assert stat.S_IMODE((tmp_path / "db").stat().st_mode) == 0o700


def test_a_planted_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("not yours")
    target.chmod(0o644)
    link = tmp_path / "data" / "auth.db"
    link.parent.mkdir(mode=0o700)
    link.symlink_to(target)
    with pytest.raises(PrivateFileError) as caught:
        create_private_file(link)
    assert caught.value.code == "stack.link"
    with pytest.raises(OSError):
        write_private(link, "x")
    assert target.read_text() == "not yours"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_secure_tree_repairs_nested_entries_and_skips_links(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "auth" / "keys").mkdir(parents=True)
    (root / "auth").chmod(0o755)
    (root / "auth" / "auth.db").write_text("x")
    (root / "auth" / "auth.db").chmod(0o644)
    outside = tmp_path / "outside"
    outside.write_text("y")
    outside.chmod(0o644)
    (root / "link").symlink_to(outside)
    secure_tree(root)
    assert loose(modes_under(root), root) == {}
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644  # the link's target is not ours to change


@pytest.mark.skipif(not IS_ROOT, reason="needs root to make a directory owned by another user")
def test_a_directory_owned_by_someone_else_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, 65534)  # nobody
    with pytest.raises(PrivateFileError) as caught:
        ensure_private_dir(foreign)
    assert caught.value.code == "stack.foreign_owner"
