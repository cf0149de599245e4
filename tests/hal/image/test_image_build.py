"""The CVM image: reproducible to the byte, and holding the in-CVM services and nothing else."""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cube_stack.hal.image.build import LockMismatchError, build_image
from cube_stack.hal.image.spec import render_lock
from tests.hal.image.image_kit import REPO, Built

pytestmark = pytest.mark.slow

BANNED_PROGRAMS = {
    "sh", "bash", "dash", "ash", "zsh", "busybox", "login", "getty", "agetty", "sulogin", "su", "sudo",
    "sshd", "ssh", "dropbear", "apt", "apt-get", "dpkg", "pip", "pip3", "gcc", "cc", "make", "passwd",
    "systemd",
}  # fmt: skip


def test_two_builds_from_the_same_inputs_are_byte_identical(built: Built) -> None:
    assert built.first.sha256 == built.second.sha256
    assert built.first.initramfs.read_bytes() == built.second.initramfs.read_bytes()
    assert built.first.manifest.read_text() == built.second.manifest.read_text()
    print(
        f"\ninitramfs {built.first.sha256}: {built.first.size / 1e6:.1f} MB compressed, "
        f"{built.first.uncompressed_size / 1e6:.1f} MB unpacked, {built.first.entries} entries"
    )
    assert built.first.size < 100_000_000  # it boots from memory, and all of it is trusted code


def test_the_manifest_names_every_entry_with_its_hash(built: Built) -> None:
    lines = built.first.manifest.read_text().splitlines()
    assert len(lines) == built.first.entries
    by_path = {line.split(" ", 2)[2]: line.split(" ", 1)[0] for line in lines}
    import hashlib

    assert by_path["init"] == hashlib.sha256(built.files["init"][1]).hexdigest()


def test_every_timestamp_is_the_locked_epoch(built: Built) -> None:
    import gzip

    from cube_stack.hal.image.cpio import read_cpio

    times = {mtime for _, _, mtime, _ in read_cpio(gzip.decompress(built.first.initramfs.read_bytes()))}
    assert times == {built.lock.source_date_epoch}


def test_no_shell_login_ssh_compiler_or_package_manager(built: Built) -> None:
    found = sorted(
        path
        for path, (mode, _) in built.files.items()
        if not stat.S_ISDIR(mode) and path.rsplit("/", 1)[-1] in BANNED_PROGRAMS and path != "etc/passwd"
    )
    assert found == []
    programs = sorted(
        path
        for path, (mode, _) in built.files.items()
        if stat.S_ISREG(mode) and path.startswith(("usr/bin/", "usr/sbin/", "usr/libexec/"))
    )
    assert programs == ["usr/bin/python3.11"]
    scripts = sorted(
        path
        for path, (mode, data) in built.files.items()
        if stat.S_ISREG(mode) and mode & 0o111 and data.startswith(b"#!")
    )
    assert scripts == ["init"]  # nothing else could run as a program, even by path


def test_the_root_account_is_locked_and_no_password_exists(built: Built) -> None:
    assert "etc/shadow" not in built.files and "etc/gshadow" not in built.files
    passwd = built.files["etc/passwd"][1].decode().splitlines()
    assert passwd == ["root:*:0:0:root:/run/cube:/nonexistent"]


def test_no_torch_no_bytecode_no_auth_service_dependencies(built: Built) -> None:
    top = {path.split("/")[4] for path in built.files if path.startswith("usr/lib/python3/dist-packages/")}
    for absent in (
        "torch",
        "transformers",
        "sentence_transformers",
        "sqlalchemy",
        "argon2",
        "pygls",
        "cube_lsp",
    ):
        assert absent not in top
    assert {"cube_stack", "cube_wire", "llama_cpp", "uvicorn", "grpc"} <= top
    assert not [path for path in built.files if path.endswith(".pyc") or "__pycache__" in path]


def test_no_build_machine_path_is_inside(built: Built, image_site_packages: Path) -> None:
    """Paths of this checkout, the build environments or pip's build directories would make builds differ."""
    markers = [
        str(REPO).encode(),
        str(image_site_packages.parent).encode(),
        sys.prefix.encode(),
        b"/tmp/pip-install-",
        b"/tmp/pip-req-build-",
        b"/tmp/pip-wheel-",
    ]
    leaking = sorted(
        path
        for path, (mode, data) in built.files.items()
        if stat.S_ISREG(mode) and any(m in data for m in markers)
    )
    assert leaking == []


def test_init_loads_the_snp_and_virtio_modules_dependencies_first(built: Built) -> None:
    modules = built.files["etc/cube/modules"][1].decode().split()
    names = [Path(path).name for path in modules]
    assert {"sev-guest.ko", "virtio_net.ko", "virtio_blk.ko", "virtio_pci.ko"} <= set(names)
    assert names.index("virtio.ko") < names.index("virtio_pci.ko") < names.index("virtio_net.ko")
    for path in modules:
        assert path.lstrip("/") in built.files


def test_the_model_list_in_the_image_is_the_one_given(built: Built) -> None:
    assert built.files["etc/cube/model-hashes"][1] == built.spec.model_hashes.read_bytes()


def test_the_image_python_runs_every_service_from_the_image_alone(built: Built, tmp_path: Path) -> None:
    """chroot into the unpacked image: Debian's Python imports the services, llama.cpp and the stubs."""
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet"], input=_archive(built), cwd=root, check=True)
    code = (
        "import os; os.environ['CUBE_AUTH_GRPC_STUBS'] = '/usr/lib/cube/auth_grpc_stubs'\n"
        "import cube_stack.proxy.standalone, cube_stack.runtime.standalone, cube_stack.agent\n"
        "import llama_cpp, numpy, ssl, sqlite3, ctypes, lzma, bz2\n"
        "from cube_stack.auth.grpc.codegen import ensure_generated; ensure_generated()\n"
        "print('ok', llama_cpp.__version__)\n"
    )
    chroot = shutil.which("chroot", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    assert chroot is not None, "chroot (coreutils) is missing"
    done = subprocess.run(
        [chroot, str(root), "/usr/bin/python3.11", "-IB", "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin"},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok ")


def _archive(built: Built) -> bytes:
    import gzip

    return gzip.decompress(built.first.initramfs.read_bytes())


def test_an_installed_version_that_differs_from_the_lock_stops_the_build(
    built: Built, image_site_packages: Path, tmp_path: Path
) -> None:
    python = dict(built.lock.python)
    python["starlette"] = "0.0.1"
    lock = dataclasses.replace(built.lock, python=python)
    with pytest.raises(LockMismatchError, match=r"starlette is .* the lock says 0\.0\.1"):
        build_image(built.spec, lock, tmp_path, site_packages=image_site_packages)
    debian = dict(built.lock.debian)
    debian["libc6"] = "0:0.0-0"
    with pytest.raises(LockMismatchError, match="libc6"):
        build_image(
            built.spec,
            dataclasses.replace(built.lock, debian=debian),
            tmp_path,
            site_packages=image_site_packages,
        )


def test_the_committed_lock_is_rendered_canonically(built: Built) -> None:
    from tests.hal.image.image_kit import LOCK

    assert render_lock(built.lock) == LOCK.read_text()


def test_the_measurement_of_the_project_image_is_stable_and_covers_every_byte(
    built: Built, tmp_path: Path
) -> None:
    """The real Debian kernel and this image over the AmdSev OVMF: a rebuild measures the same, and one
    changed byte of the initramfs or of the command line measures differently."""
    from cube_stack.hal.deployment import LaunchInputs
    from cube_stack.hal.measure import launch_measurement

    amdsev = Path(__file__).resolve().parents[4] / "shared/testvectors/snp/measure/ovmf_AmdSev_suffix.bin"
    cmdline = "console=ttyS0 panic=-1"

    def measure(initramfs: Path, append: str = cmdline) -> str:
        inputs = LaunchInputs(amdsev, built.first.kernel, initramfs, append, 4, "EPYC-v4")
        return launch_measurement(inputs).hex()

    first = measure(built.first.initramfs)
    assert len(first) == 96
    assert measure(built.second.initramfs) == first  # the rebuild: a third party's check
    changed = tmp_path / "initramfs.cpio.gz"
    data = bytearray(built.first.initramfs.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed.write_bytes(bytes(data))
    assert measure(changed) != first
    assert measure(built.first.initramfs, cmdline + " ") != first
