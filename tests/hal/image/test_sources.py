"""Image inputs are checked against what dpkg and pip recorded: a modified file stops the build."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
import tarfile
from pathlib import Path

import pytest

from cube_stack.hal import HalError
from cube_stack.hal.image import debian, pydists
from cube_stack.hal.image.config_disk import write_config_disk
from cube_wire.host_data import host_data_from_file


def dpkg_package(tmp_path: Path, files: dict[str, bytes], *, recorded: dict[str, bytes] | None = None):
    """A package in dpkg's own formats (.list, .md5sums) over files under tmp_path/root."""
    root = tmp_path / "root"
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    info = tmp_path / "info"
    info.mkdir()
    listed = sorted({"/" + p for p in files} | {"/usr", "/lib"})
    (info / "pkg.list").write_text("/.\n" + "\n".join(listed) + "\n")
    sums = recorded if recorded is not None else files
    (info / "pkg.md5sums").write_text(
        "".join(f"{hashlib.md5(d, usedforsecurity=False).hexdigest()}  {p}\n" for p, d in sums.items())
    )
    return debian.DebianPackage("pkg", "1.0-1", info / "pkg.list", info / "pkg.md5sums"), root


def test_merged_usr_paths() -> None:
    assert debian.image_path("/lib/x86_64-linux-gnu/libc.so.6") == "usr/lib/x86_64-linux-gnu/libc.so.6"
    assert debian.image_path("/bin/true") == "usr/bin/true"
    assert debian.image_path("/usr/lib/python3.11/os.py") == "usr/lib/python3.11/os.py"
    assert debian.image_path("/etc/hosts") == "etc/hosts"


def test_files_come_out_checked_with_directories_left_to_the_archive(tmp_path: Path) -> None:
    package, root = dpkg_package(tmp_path, {"usr/lib/a.so": b"elf", "usr/share/doc/pkg/README": b"doc"})
    entries = {e.path: e for e in debian.package_entries(package, exclude=["usr/share/doc/*"], root=root)}
    assert set(entries) == {"usr/lib/a.so"}
    assert entries["usr/lib/a.so"].data == b"elf"


def test_a_file_changed_after_installation_stops_the_build(tmp_path: Path) -> None:
    package, root = dpkg_package(
        tmp_path, {"usr/lib/a.so": b"tampered"}, recorded={"usr/lib/a.so": b"original"}
    )
    with pytest.raises(HalError) as caught:
        list(debian.package_entries(package, root=root))
    assert caught.value.code == "hal.package_modified"
    assert "apt-get install --reinstall pkg" in caught.value.message


def test_setuid_bits_are_dropped(tmp_path: Path) -> None:
    package, root = dpkg_package(tmp_path, {"usr/lib/helper": b"x"})
    (root / "usr/lib/helper").chmod(0o4755)
    (entry,) = debian.package_entries(package, root=root)
    assert entry.mode == stat.S_IFREG | 0o755


def test_a_missing_package_names_the_install_command() -> None:
    with pytest.raises(HalError) as caught:
        debian.installed("no-such-package-cube")
    assert caught.value.code == "hal.package_missing"
    assert "apt-get install no-such-package-cube" in caught.value.message


def test_the_real_libc_is_read_and_verified() -> None:
    package = debian.installed("libc6")
    paths = {e.path for e in debian.package_entries(package, exclude=["usr/share/*"])}
    assert "usr/lib/x86_64-linux-gnu/libc.so.6" in paths


def fake_dist(
    site: Path, name: str, version: str, files: dict[str, bytes], requires: list[str], *, tamper: str = ""
):
    """A distribution installed the way pip leaves one: METADATA, RECORD with SHA-256 per file."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    (info / "METADATA").write_text(metadata)
    rows = []
    for path, data in files.items():
        (site / path).parent.mkdir(parents=True, exist_ok=True)
        (site / path).write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{path},sha256={digest},{len(data)}")
    rows += [f"{name}-{version}.dist-info/METADATA,,", f"{name}-{version}.dist-info/RECORD,,"]
    rows.append(f"../../../bin/{name},,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")
    if tamper:
        (site / tamper).write_bytes(b"changed")


def test_closure_follows_requirements_for_the_image_python(tmp_path: Path) -> None:
    fake_dist(
        tmp_path, "top", "1.0", {"top/__init__.py": b""}, ["dep>=1", "old; python_full_version < '3.11.3'"]
    )
    fake_dist(
        tmp_path, "dep", "2.0", {"dep.py": b""}, ["extra-only; extra == 'x'", "win; sys_platform == 'win32'"]
    )
    fake_dist(tmp_path, "old", "4.0", {"old.py": b""}, [])
    available = pydists.find(tmp_path)
    assert pydists.closure(["top"], available, python_full_version="3.11.2") == ["dep", "old", "top"]
    assert pydists.closure(["top"], available, python_full_version="3.11.7") == ["dep", "top"]


def test_a_required_distribution_that_is_not_installed_is_named(tmp_path: Path) -> None:
    fake_dist(tmp_path, "top", "1.0", {"top.py": b""}, ["absent-dist"])
    with pytest.raises(HalError, match="absent-dist is not installed"):
        pydists.closure(["top"], pydists.find(tmp_path))


def test_dist_files_skip_caches_and_scripts_and_are_checked_against_record(tmp_path: Path) -> None:
    fake_dist(tmp_path, "top", "1.0", {"top/__init__.py": b"x = 1\n", "top/tests/test_x.py": b""}, [])
    (dist,) = pydists.find(tmp_path).values()
    paths = {e.path for e in pydists.dist_entries(dist, exclude=["*/tests/*"])}
    assert paths == {
        f"{pydists.SITE_PACKAGES}/top/__init__.py",
        f"{pydists.SITE_PACKAGES}/top-1.0.dist-info/METADATA",
        f"{pydists.SITE_PACKAGES}/top-1.0.dist-info/RECORD",
    }


def test_a_package_edited_in_the_build_environment_stops_the_build(tmp_path: Path) -> None:
    fake_dist(tmp_path, "top", "1.0", {"top/__init__.py": b"x = 1\n"}, [], tamper="top/__init__.py")
    (dist,) = pydists.find(tmp_path).values()
    with pytest.raises(HalError) as caught:
        list(pydists.dist_entries(dist))
    assert caught.value.code == "hal.package_modified"


def test_repository_packages_come_from_sources_only(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "__pycache__").mkdir(parents=True)
    (package / "_generated").mkdir()
    (package / "__init__.py").write_text("")
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    (package / "_generated" / "stub.py").write_text("")
    (package / "notes.txt").write_text("stray")
    (package / "api.proto").write_text("syntax = 'proto3';")
    paths = {e.path for e in pydists.source_tree_entries(package, suffixes=(".py", ".proto"))}
    assert paths == {f"{pydists.SITE_PACKAGES}/pkg/__init__.py", f"{pydists.SITE_PACKAGES}/pkg/api.proto"}


SETTINGS = {"version": 1, "auth_endpoint": "http://10.0.2.2:8189", "domain": "d-1", "log_level": "info"}


def test_config_disk_is_deterministic_and_its_host_data_is_the_settings_digest(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(SETTINGS, indent=4))
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF" + bytes(100))
    one, two = tmp_path / "one.tar", tmp_path / "two.tar"
    assert write_config_disk(one, settings, [model]) == host_data_from_file(settings)
    write_config_disk(two, settings, [model])
    assert one.read_bytes() == two.read_bytes()
    with tarfile.open(one) as disk:
        assert [(m.name, m.mode, m.mtime, m.uid) for m in disk] == [
            ("settings.json", 0o444, 0, 0),
            ("tiny.gguf", 0o444, 0, 0),
        ]


@pytest.mark.parametrize(
    ("settings", "model", "message"),
    [
        ({**SETTINGS, "log_level": "trace"}, "m.gguf", "log_level"),
        ({**SETTINGS, "extra": 1}, "m.gguf", "extra"),
        (SETTINGS, "m.bin", "NAME.gguf"),
    ],
)
def test_config_disk_refuses_what_the_guest_would_refuse(
    tmp_path: Path, settings: dict[str, object], model: str, message: str
) -> None:
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    (tmp_path / model).write_bytes(b"GGUF")
    with pytest.raises(HalError, match=message) as caught:
        write_config_disk(tmp_path / "disk.tar", tmp_path / "settings.json", [tmp_path / model])
    assert caught.value.code == "hal.config_invalid"


def test_a_directory_without_distributions_says_which_one_to_use(tmp_path: Path) -> None:
    with pytest.raises(HalError, match=r"prepare-image-env\.sh prints"):
        pydists.find(tmp_path / "nonexistent")


def test_a_single_file_read_for_the_image_is_checked_too(tmp_path: Path) -> None:
    """The kernel and its modules are read one by one (not through the package walk): same check."""
    package, root = dpkg_package(tmp_path, {"lib/modules/6.1/virtio.ko": b"elf"})
    assert debian.read_verified(package, "/lib/modules/6.1/virtio.ko", root=root) == b"elf"
    (root / "lib/modules/6.1/virtio.ko").write_bytes(b"patched")
    with pytest.raises(HalError) as caught:
        debian.read_verified(package, "/lib/modules/6.1/virtio.ko", root=root)
    assert caught.value.code == "hal.package_modified"
