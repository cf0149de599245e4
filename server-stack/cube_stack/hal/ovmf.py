"""Read an OVMF image's footer GUID table and SEV metadata, to see whether it measures the kernel.

An SEV-SNP guest's launch measurement covers the kernel, initrd and command line only when OVMF
declares an SNP_KERNEL_HASHES metadata section: QEMU then writes their SHA-256 table into that page
before launch, and OVMF checks what it loads against it. Only edk2's AmdSev build has that section;
the plain OvmfPkgX64 build (Debian's ``ovmf`` package) boots the same kernel without checking it, so
a measurement over it would pin a firmware that accepts any kernel. Layout (edk2
``OvmfPkg/ResetVector``): the table ends 32 bytes before the end of the image with the footer entry
{u16 size, GUID 96b582de-...}; entries {data, u16 size, GUID} run backwards from there; the SEV
metadata entry (dc886566-...) holds a u32 offset from the end of the image to the "ASEV" header
{signature, u32 size, u32 version, u32 count} followed by {u32 gpa, u32 size, u32 type} sections.
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

from cube_stack.hal import HalError

FOOTER_GUID = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d")
SEV_METADATA_GUID = uuid.UUID("dc886566-984a-4798-a75e-5585a7bf67cc")
SNP_KERNEL_HASHES = 0x10
_ENTRY_HEADER = struct.Struct("<H16s")  # size (including this header), GUID in edk2's byte order
_SECTION = struct.Struct("<III")  # gpa, size, type


def footer_table(image: bytes) -> dict[uuid.UUID, bytes]:
    """Return the entries of the OVMF footer GUID table, or an empty dict if the image has none."""
    start = len(image) - 32 - _ENTRY_HEADER.size
    if start < 0:
        return {}
    size, guid = _ENTRY_HEADER.unpack_from(image, start)
    if uuid.UUID(bytes_le=guid) != FOOTER_GUID or size < _ENTRY_HEADER.size or size > start:
        return {}
    table = image[start - (size - _ENTRY_HEADER.size) : start]
    entries: dict[uuid.UUID, bytes] = {}
    while len(table) >= _ENTRY_HEADER.size:
        size, guid = _ENTRY_HEADER.unpack_from(table, len(table) - _ENTRY_HEADER.size)
        if size < _ENTRY_HEADER.size or size > len(table):
            break
        entries[uuid.UUID(bytes_le=guid)] = table[len(table) - size : len(table) - _ENTRY_HEADER.size]
        table = table[: len(table) - size]
    return entries


def sev_metadata_section_types(image: bytes) -> list[int]:
    """Return the types of the SEV metadata sections, in table order ([] when there is no metadata)."""
    entry = footer_table(image).get(SEV_METADATA_GUID)
    if entry is None or len(entry) < 4:
        return []
    start = len(image) - int.from_bytes(entry[:4], "little")
    if start < 0 or start + 16 > len(image) or image[start : start + 4] != b"ASEV":
        return []
    _size, _version, count = struct.unpack_from("<III", image, start + 4)
    sections = image[start + 16 : start + 16 + count * _SECTION.size]
    return [_SECTION.unpack_from(sections, i * _SECTION.size)[2] for i in range(len(sections) // 12)]


def read_firmware(path: Path) -> bytes:
    """Return the bytes of the OVMF image at ``path``."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise HalError(
            f"firmware {path}: cannot be read ({exc.strerror})", code="hal.file_unreadable"
        ) from None


def check_measures_kernel(path: Path) -> None:
    """Raise ``hal.ovmf_no_kernel_hashes`` unless the OVMF at ``path`` measures the direct-boot kernel."""
    image = read_firmware(path)
    if not footer_table(image):
        raise HalError(
            f"firmware {path}: no OVMF footer table at its end; wanted an OVMF image (OVMF.fd), "
            "not a VARS file or another firmware",
            code="hal.ovmf_invalid",
        )
    if SNP_KERNEL_HASHES not in sev_metadata_section_types(image):
        raise HalError(
            f"firmware {path}: this OVMF has no SNP kernel-hashes table, so the launch measurement "
            "would not cover the kernel, initrd or command line (Debian's `ovmf` package and edk2's "
            "OvmfPkgX64 are such builds). Fix: build edk2's OvmfPkg/AmdSev/AmdSevX64.dsc "
            "(`build -p OvmfPkg/AmdSev/AmdSevX64.dsc`, an empty OvmfPkg/AmdSev/Grub/grub.efi will do) "
            "and pass its OVMF.fd",
            code="hal.ovmf_no_kernel_hashes",
        )
