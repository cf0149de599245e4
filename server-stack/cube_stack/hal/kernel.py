"""Does a Linux kernel have what an SEV-SNP guest running the CVM image needs? Read from its config.

The check reads the kernel's ``.config`` (Debian ships it as ``/boot/config-<version>``) and answers with
what is missing, each with the reason it matters, and with the modules the initramfs must carry and load
for the options built as modules (Debian 12 builds ``SEV_GUEST`` as a module: without ``sev-guest.ko`` in
the image, the agent finds no ``/dev/sev-guest`` and the proxy refuses to start).

``TSM_REPORTS`` (configfs-tsm) exists from Linux 6.7 on; it is required only of kernels that can have it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["REQUIREMENTS", "KernelCheck", "Requirement", "check_kernel_config"]


@dataclass(frozen=True)
class Requirement:
    """A config option the guest needs: built in (``y``), or also as a module (``m``) when allowed."""

    option: str  # without the CONFIG_ prefix
    why: str
    module: str | None = None  # the module's name when it may be built as one; None: must be built in
    since: tuple[int, int] | None = None  # required only from this kernel version on


REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement("AMD_MEM_ENCRYPT", "SEV/SNP guest memory encryption support"),
    Requirement("SEV_GUEST", "/dev/sev-guest, the agent's way to ask the firmware for a report", "sev-guest"),
    Requirement("TSM_REPORTS", "configfs-tsm, the agent's preferred report interface", "tsm", since=(6, 7)),
    Requirement("CONFIGFS_FS", "configfs, which configfs-tsm lives in", "configfs", since=(6, 7)),
    Requirement("EFI", "OVMF boots the kernel as an EFI application"),
    Requirement("EFI_STUB", "OVMF boots the kernel as an EFI application"),
    Requirement("BLK_DEV_INITRD", "the initramfs is the root filesystem"),
    Requirement("DEVTMPFS", "/dev is populated by the kernel (the image has no udev)"),
    Requirement("VIRTIO", "virtio devices (network) under QEMU", "virtio"),
    Requirement("VIRTIO_PCI", "virtio devices on PCI, as QEMU's q35 machine has them", "virtio_pci"),
    Requirement("VIRTIO_NET", "the network the proxy serves on", "virtio_net"),
    Requirement("SERIAL_8250_CONSOLE", "the serial console the launcher reads boot messages from"),
)

_VERSION = re.compile(r"^# Linux/\S+ (\d+)\.(\d+)\S* Kernel Configuration", re.MULTILINE)
_OPTION = re.compile(r"^CONFIG_([A-Z0-9_]+)=(.*)$")


@dataclass(frozen=True)
class KernelCheck:
    """What a kernel config offers an SNP guest."""

    version: tuple[int, int] | None
    missing: tuple[tuple[str, str, str], ...]  # (option, found: "y"/"m"/"not set", why)
    modules: tuple[str, ...] = field(default=())  # to put in the initramfs and load, in this order

    @property
    def ok(self) -> bool:
        """Return True when nothing the guest needs is missing."""
        return not self.missing


def check_kernel_config(text: str) -> KernelCheck:
    """Check a kernel ``.config`` against :data:`REQUIREMENTS`."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = _OPTION.match(line.strip())
        if match:
            values[match[1]] = match[2].strip().strip('"')
    found = _VERSION.search(text)
    version = (int(found[1]), int(found[2])) if found else None
    missing: list[tuple[str, str, str]] = []
    modules: list[str] = []
    for need in REQUIREMENTS:
        if need.since is not None and (version is None or version < need.since):
            continue
        value = values.get(need.option, "not set")
        if value == "y":
            continue
        if value == "m" and need.module is not None:
            modules.append(need.module)
            continue
        wanted = "y or m" if need.module is not None else "y"
        missing.append((f"CONFIG_{need.option}", value, f"{need.why} (wanted {wanted})"))
    return KernelCheck(version, tuple(missing), tuple(modules))
