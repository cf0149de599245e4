"""The launcher's QEMU command line, built from the deployment description (upstream QEMU >= 9.1).

Pure: no file is opened and nothing runs; ``hal/scripts/launch-cvm.sh`` execs QEMU with the result.
The SNP mode uses upstream syntax (not the AMD fork's ``memory-backend-memfd-private`` and
``kvm-type=protected``): a ``sev-snp-guest`` object as the machine's confidential-guest-support,
guest RAM from a shared memfd backend, OVMF as ``-bios`` (SNP cannot use pflash), and
``kernel-hashes=on`` so QEMU writes the SHA-256 table of -kernel/-initrd/-append that OVMF checks and
the launch measurement covers. Every measured input comes from ``deployment.launch``, the same object
the measurement is computed from.

The ``--no-sev`` mode boots the same kernel, initramfs and command line on hosts without SNP, under
TCG: no confidential-guest-support, no sev objects, QEMU's default firmware (SeaBIOS loads -kernel
directly, in seconds under TCG) and ``-cpu max``, since TCG does not implement every EPYC feature.
"""

from __future__ import annotations

import base64

from cube_stack.hal import HalError
from cube_stack.hal.deployment import GUEST_FEATURES_DEFAULT, Deployment

# C-bit position and physical address bits lost to encryption on Milan, Genoa and Turin.
CBITPOS = 51
REDUCED_PHYS_BITS = 1


def qemu_argv(deployment: Deployment, *, sev: bool = True) -> list[str]:
    """Return the qemu-system-x86_64 arguments (without the program name) that launch ``deployment``."""
    launch = deployment.launch
    if launch.kernel is None:
        raise HalError("kernel: missing; the launcher boots a kernel directly", code="hal.error")
    argv = ["-nographic", "-no-reboot", "-m", deployment.memory, "-smp", str(launch.vcpus)]
    if sev:
        if launch.vmm != "QEMU":
            raise HalError(f"vmm: found {launch.vmm!r}, this launcher is QEMU", code="hal.error")
        if launch.guest_features != GUEST_FEATURES_DEFAULT:
            raise HalError(
                f"guest_features: found {launch.guest_features:#x}, but upstream QEMU requests no "
                f"VMSA features, so the guest would run with {GUEST_FEATURES_DEFAULT:#x} and fail its "
                f"measurement; measure and describe the deployment with guest_features = "
                f'"{GUEST_FEATURES_DEFAULT:#x}"',
                code="hal.guest_features_unsupported",
            )
        snp = f"sev-snp-guest,id=sev0,cbitpos={CBITPOS},reduced-phys-bits={REDUCED_PHYS_BITS}"
        snp += ",kernel-hashes=on"
        if deployment.host_data is not None:
            snp += f",host-data={base64.b64encode(deployment.host_data).decode()}"
        argv += [
            "-accel", "kvm",
            "-machine", "q35,confidential-guest-support=sev0,memory-backend=ram1",
            "-object", f"memory-backend-memfd,id=ram1,size={deployment.memory},share=true,prealloc=false",
            "-object", snp,
            "-cpu", str(launch.vcpu_type),
            "-bios", str(launch.firmware),
        ]  # fmt: skip
    else:
        argv += ["-accel", "tcg", "-machine", "q35", "-cpu", "max"]
    argv += ["-kernel", str(launch.kernel)]
    if launch.initramfs is not None:
        argv += ["-initrd", str(launch.initramfs)]
    if launch.cmdline:
        argv += ["-append", launch.cmdline]
    argv += _config_disk(deployment, sev=sev)
    argv += _network(deployment, sev=sev)
    return argv


def _config_disk(deployment: Deployment, *, sev: bool) -> list[str]:
    """Return the read-only virtio disk with settings and models (the guest's /dev/vda), if any."""
    if deployment.config_disk is None:
        return []
    device = "virtio-blk-pci,drive=config"
    if sev:
        device += ",disable-legacy=on,iommu_platform=true"
    drive = f"file={deployment.config_disk},format=raw,if=none,id=config,readonly=on"
    return ["-drive", drive, "-device", device]


def _network(deployment: Deployment, *, sev: bool) -> list[str]:
    """Return user-mode networking with the forwarded ports, or ``-nic none`` when there are none."""
    if not deployment.ports:
        return ["-nic", "none"]
    forwards = ",".join(f"hostfwd=tcp:{p.host_address}:{p.host}-:{p.guest}" for p in deployment.ports)
    # An SNP guest's virtio devices must use the DMA API (iommu_platform) so that it bounces their
    # buffers through shared memory; no option ROM, since OVMF has no use for iPXE here.
    device = "virtio-net-pci,netdev=net0,romfile="
    if sev:
        device += ",disable-legacy=on,iommu_platform=true"
    return ["-netdev", f"user,id=net0,{forwards}", "-device", device]
