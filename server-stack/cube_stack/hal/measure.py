"""The expected SEV-SNP launch measurement of a deployment, computed with PyPI ``sev-snp-measure``.

We call its Python API (``sevsnpmeasure.guest``) in-process, after our own firmware check
(:func:`cube_stack.hal.ovmf.check_measures_kernel`) so that a firmware which would leave the kernel
unmeasured is refused with our message and code, not the library's ``RuntimeError``. The library is
imported here only: the ``server`` extra provides it, and nothing else in ``cube_stack`` needs it.
"""

from __future__ import annotations

from pathlib import Path

from cube_stack.hal import HalError
from cube_stack.hal.deployment import LaunchInputs
from cube_stack.hal.ovmf import check_measures_kernel, footer_table, read_firmware


def launch_measurement(inputs: LaunchInputs) -> bytes:
    """Return the 48-byte MEASUREMENT an SNP guest launched from ``inputs`` reports."""
    from sevsnpmeasure import guest, vcpu_types, vmm_types
    from sevsnpmeasure.sev_mode import SevMode

    if inputs.kernel is not None:
        check_measures_kernel(inputs.firmware)
    elif not footer_table(read_firmware(inputs.firmware)):
        raise HalError(
            f"firmware {inputs.firmware}: no OVMF footer table at its end; wanted an OVMF image",
            code="hal.ovmf_invalid",
        )
    for label, path in (("kernel", inputs.kernel), ("initramfs", inputs.initramfs)):
        if path is not None and not path.is_file():
            raise HalError(f"{label} {path}: not a file", code="hal.file_unreadable")
    vmm = vmm_types.VMMType[inputs.vmm]
    if inputs.vcpu_type is None and vmm is vmm_types.VMMType.QEMU:
        raise HalError("vcpu type: missing; QEMU puts its CPUID signature in every VMSA", code="hal.error")
    signature = vcpu_types.CPU_SIGS[inputs.vcpu_type] if inputs.vcpu_type else 0
    try:
        digest: bytes = guest.calc_launch_digest(
            SevMode.SEV_SNP,
            inputs.vcpus,
            signature,
            str(inputs.firmware),
            str(inputs.kernel) if inputs.kernel else None,
            str(inputs.initramfs) if inputs.initramfs else None,
            inputs.cmdline,
            inputs.guest_features,
            vmm_type=vmm,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        # The one boundary where the library's exceptions become ours; our own checks above catch
        # what we know of (firmware without kernel hashes, missing files) with a better message.
        raise HalError(f"sev-snp-measure: {exc}", code="hal.measure_failed") from None
    return digest


def firmware_measurement(firmware: Path) -> bytes:
    """Return the launch digest of the firmware pages alone (sev-snp-measure's ``--snp-ovmf-hash``)."""
    from sevsnpmeasure import guest

    if not footer_table(read_firmware(firmware)):
        raise HalError(f"firmware {firmware}: no OVMF footer table at its end", code="hal.ovmf_invalid")
    try:
        digest: bytes = guest.calc_snp_ovmf_hash(str(firmware))
    except (RuntimeError, ValueError, OSError) as exc:
        raise HalError(f"sev-snp-measure: {exc}", code="hal.measure_failed") from None
    return digest
