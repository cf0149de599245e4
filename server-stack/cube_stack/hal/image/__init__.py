"""The CVM image: a reproducible initramfs (:mod:`.build`), its ``/init`` (:mod:`.guest_init`), config disk.

Errors (all :class:`~cube_stack.hal.HalError`): ``hal.image_spec_invalid``, ``hal.lock_mismatch``,
``hal.package_missing``, ``hal.package_modified``, ``hal.kernel_missing``, ``hal.config_invalid``.
"""
