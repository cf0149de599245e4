"""HAL tooling: the deployment description, the launch measurement and the QEMU command line.

One description of a deployment (:mod:`~cube_stack.hal.deployment`) feeds both the expected launch
measurement (:mod:`~cube_stack.hal.measure`, which the client policy pins) and the launcher's QEMU
argv (:mod:`~cube_stack.hal.launch`), so the two cannot drift. :mod:`~cube_stack.hal.ovmf` reads the
firmware's footer table to refuse an OVMF that would leave the kernel unmeasured. Errors::

    CubeError
    └── HalError                    hal.error
            hal.deployment_invalid  (DeploymentError: a field of the description, named)
            hal.file_unreadable, hal.ovmf_invalid, hal.ovmf_no_kernel_hashes,
            hal.guest_features_unsupported, hal.measure_failed (sev-snp-measure's own error),
            hal.usage (cube-stack's flags)
"""

from __future__ import annotations

from cube_wire.errors import CubeError


class HalError(CubeError):
    """A HAL input (firmware, kernel, description) cannot give a trustworthy measurement or launch."""

    code = "hal.error"
