"""The deterministic newc writer: what the kernel unpacks, byte for byte the same for the same entries."""

from __future__ import annotations

import gzip
import io
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from cube_stack.hal.image.cpio import Entry, gzip_bytes, read_cpio, sorted_with_parents, write_cpio

EPOCH = 1_700_000_000


def archive(entries: list[Entry], mtime: int = EPOCH) -> bytes:
    out = io.BytesIO()
    write_cpio(entries, out, mtime=mtime)
    return out.getvalue()


def sample() -> list[Entry]:
    return [
        Entry("usr/bin/tool", stat.S_IFREG | 0o755, b"#!/bin/false\n"),
        Entry("etc/hosts", stat.S_IFREG | 0o644, b"127.0.0.1 localhost\n"),
        Entry("lib", stat.S_IFLNK | 0o777, b"usr/lib"),
        Entry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        Entry("a", stat.S_IFREG | 0o644, b"odd length"),
    ]


def test_the_same_entries_in_any_order_give_the_same_bytes() -> None:
    assert archive(sample()) == archive(list(reversed(sample())))
    assert gzip_bytes(archive(sample())) == gzip_bytes(archive(list(reversed(sample()))))


def test_entries_are_sorted_with_parents_first_and_times_fixed() -> None:
    entries = read_cpio(archive(sample()))
    paths = [path for path, _, _, _ in entries]
    assert paths == ["a", "dev", "dev/console", "etc", "etc/hosts", "lib", "usr", "usr/bin", "usr/bin/tool"]
    assert {mtime for _, _, mtime, _ in entries} == {EPOCH}
    modes = {path: mode for path, mode, _, _ in entries}
    assert modes["usr"] == stat.S_IFDIR | 0o755
    assert stat.S_ISCHR(modes["dev/console"])
    data = {path: body for path, _, _, body in entries}
    assert data["lib"] == b"usr/lib" and data["a"] == b"odd length"


def test_the_time_is_the_only_thing_a_new_epoch_changes() -> None:
    one, two = archive(sample(), mtime=EPOCH), archive(sample(), mtime=EPOCH + 1)
    assert one != two and len(one) == len(two)
    assert [(p, m, d) for p, m, _, d in read_cpio(one)] == [(p, m, d) for p, m, _, d in read_cpio(two)]


def test_gzip_header_carries_no_time_or_name() -> None:
    packed = gzip_bytes(b"x" * 1000)
    assert packed[4:8] == b"\0\0\0\0"  # MTIME
    assert packed[3] & 0x08 == 0  # FNAME flag
    assert gzip.decompress(packed) == b"x" * 1000


@pytest.mark.parametrize("path", ["/etc/passwd", "../escape", "usr/../etc", "a//b", "", "./a"])
def test_paths_that_could_unpack_elsewhere_are_refused(path: str) -> None:
    with pytest.raises(ValueError, match="bad archive path"):
        Entry(path, stat.S_IFREG | 0o644, b"")


def test_two_entries_for_one_path_stop_the_build() -> None:
    with pytest.raises(ValueError, match="two entries for 'etc/hosts'"):
        sorted_with_parents(
            [Entry("etc/hosts", stat.S_IFREG | 0o644), Entry("etc/hosts", stat.S_IFREG | 0o600)]
        )


def test_a_file_cannot_sit_inside_a_file() -> None:
    with pytest.raises(ValueError, match="not a directory"):
        sorted_with_parents([Entry("etc", stat.S_IFREG | 0o644), Entry("etc/hosts", stat.S_IFREG | 0o644)])


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio is not installed")
def test_gnu_cpio_reads_the_archive_as_we_wrote_it(tmp_path: Path) -> None:
    """An independent reader: GNU cpio lists and extracts the same paths, contents and link target."""
    data = archive([e for e in sample() if e.kind != "device"])
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=data, capture_output=True, check=True)
    assert listing.stdout.decode().split() == [
        "a",
        "etc",
        "etc/hosts",
        "lib",
        "usr",
        "usr/bin",
        "usr/bin/tool",
    ]
    subprocess.run(["cpio", "-idm", "--quiet"], input=data, cwd=tmp_path, check=True)
    assert (tmp_path / "usr/bin/tool").read_bytes() == b"#!/bin/false\n"
    assert (tmp_path / "usr/bin/tool").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "lib").readlink() == Path("usr/lib")
    assert int((tmp_path / "etc/hosts").stat().st_mtime) == EPOCH
