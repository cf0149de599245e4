"""Fixtures for the HAL tooling: the launch-measurement vectors and a sample deployment in tmp."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

MEASURE = Path(__file__).resolve().parents[2].parent / "shared" / "testvectors" / "snp" / "measure"
AMDSEV = MEASURE / "ovmf_AmdSev_suffix.bin"  # edk2 AmdSevX64: has the SNP kernel-hashes section
OVMFX64 = MEASURE / "ovmf_OvmfX64_suffix.bin"  # edk2 OvmfPkgX64: no kernel-hashes section
SETTINGS = {"version": 1, "auth_endpoint": "https://auth.example.com", "domain": "d-1", "log_level": "info"}


def load_vectors() -> list[dict[str, object]]:
    """Return measurement_vectors.json's vectors (an empty list when the shared tree is absent)."""
    path = MEASURE / "measurement_vectors.json"
    return json.loads(path.read_text())["vectors"] if path.is_file() else []


@pytest.fixture
def sample(tmp_path: Path) -> Callable[..., Path]:
    """Return a writer of a sample deployment TOML (small fake kernel and initramfs); extra keys override."""

    def write(**overrides: object) -> Path:
        if not AMDSEV.is_file():
            pytest.skip(f"{AMDSEV} is absent (the shared test vectors)")
        shutil.copy(AMDSEV, tmp_path / "OVMF.fd")
        (tmp_path / "vmlinuz").write_bytes(b"MZ fake kernel " * 64)
        (tmp_path / "initramfs.cpio").write_bytes(b"070701 fake initramfs " * 64)
        (tmp_path / "settings.json").write_text(json.dumps(SETTINGS, indent=2))
        fields: dict[str, object] = {
            "version": 1,
            "firmware": "OVMF.fd",
            "kernel": "vmlinuz",
            "initramfs": "initramfs.cpio",
            "cmdline": "console=ttyS0 quiet",
            "vcpus": 2,
            "vcpu_type": "EPYC-Milan",
            "memory": "2048M",
            "host_data": "settings.json",
        }
        fields.update(overrides)
        lines = [f"{key} = {json.dumps(value)}" for key, value in fields.items() if value is not None]
        lines += ["[[ports]]", "host = 18443", "guest = 8443"]
        path = tmp_path / "deployment.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    return write
