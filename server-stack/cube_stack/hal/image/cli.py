"""``cube-stack hal build | lock | config-disk``: the image commands (see hal/README.md)."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

DEFAULT_SPEC = Path("hal/image.toml")
DEFAULT_LOCK = Path("hal/image.lock")


def add_image_commands(hal_actions: Any) -> None:
    """Add the image subcommands to `cube-stack hal`."""
    build = hal_actions.add_parser(
        "build",
        help="build the CVM image (initramfs + kernel) reproducibly from the lock",
        description="Prints what it built and the initramfs SHA-256 as the last line.",
    )
    lock = hal_actions.add_parser("lock", help="pin the build environment's versions in hal/image.lock")
    for sub in (build, lock):
        sub.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="hal/image.toml")
        sub.add_argument("--lock", type=Path, default=DEFAULT_LOCK, help="hal/image.lock")
        sub.add_argument(
            "--site-packages",
            type=Path,
            required=True,
            help="the image's Python environment (hal/scripts/prepare-image-env.sh prints it)",
        )
    build.add_argument("-o", "--output", type=Path, required=True, help="directory for the outputs")
    build.add_argument("--model-hashes", type=Path, help="allowed model list (default: the spec's)")
    lock.add_argument(
        "--kernel-release",
        help="the Debian kernel to boot (default: the old lock's, else the newest in /boot)",
    )
    lock.add_argument(
        "--source-date-epoch",
        type=int,
        default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or None,
        help="every timestamp in the image (default: SOURCE_DATE_EPOCH, else the old lock's)",
    )
    embedding = hal_actions.add_parser(
        "embedding-model",
        help="convert all-MiniLM-L6-v2 to GGUF with llama.cpp's converter (the image embeds without torch)",
        description="Prints the file's SHA-256 as the last line, for hal/model-hashes.txt.",
    )
    embedding.add_argument("-o", "--output", type=Path, required=True, help="the GGUF file to write")
    embedding.add_argument("--llama-cpp-src", type=Path, help="llama-cpp-python's unpacked sources")
    embedding.add_argument("--outtype", choices=("f16", "f32"), default="f16")
    disk = hal_actions.add_parser(
        "config-disk", help="write the config disk (settings.json + model files) a CVM reads at boot"
    )
    disk.add_argument("-o", "--output", type=Path, required=True, help="the disk image (a tar)")
    disk.add_argument("--settings", type=Path, required=True, help="deployment settings JSON (HOST_DATA)")
    disk.add_argument("--model", type=Path, action="append", default=[], help="a NAME.gguf to serve")


def newest_debian_kernel(boot: Path = Path("/boot")) -> str:
    """Return the release of the newest ``vmlinuz-*`` in /boot.

    Not the running kernel's: a build host may run anything, the image boots Debian's.
    """
    from cube_stack.hal import HalError

    releases = sorted((p.name.removeprefix("vmlinuz-") for p in boot.glob("vmlinuz-*")), key=_version_key)
    if not releases:
        raise HalError("no /boot/vmlinuz-*: apt-get install linux-image-amd64", code="hal.kernel_missing")
    return releases[-1]


def _version_key(release: str) -> list[int]:
    return [int(part) for part in re.findall(r"\d+", release)]


def run_image_command(args: argparse.Namespace) -> int:
    """Run one of the image subcommands; CubeError propagates to cube-stack's handler."""
    if args.action == "embedding-model":
        from cube_stack.hal.embedding_model import main as convert

        argv = ["-o", str(args.output), "--outtype", args.outtype]
        if args.llama_cpp_src is not None:
            argv += ["--llama-cpp-src", str(args.llama_cpp_src)]
        return convert(argv)
    if args.action == "config-disk":
        from cube_stack.hal.image.config_disk import write_config_disk

        host_data = write_config_disk(args.output, args.settings, args.model)
        print(f"config disk: {args.output} ({len(args.model)} model file(s))")
        print(f"HOST_DATA {host_data.hex()}")
        return 0
    from cube_stack.hal.image.build import build_image, current_lock
    from cube_stack.hal.image.spec import load_lock, load_spec, render_lock

    spec = load_spec(args.spec)
    if args.action == "lock":
        old = load_lock(args.lock) if args.lock.exists() else None
        epoch = args.source_date_epoch
        if epoch is None:
            epoch = old.source_date_epoch if old else 0
        release = args.kernel_release or (old.kernel_release if old else newest_debian_kernel())
        lock = current_lock(
            spec, site_packages=args.site_packages, kernel_release=release, source_date_epoch=epoch
        )
        args.lock.write_text(render_lock(lock))
        print(
            f"wrote {args.lock}: {len(lock.debian)} Debian packages, {len(lock.python)} Python distributions"
        )
        return 0
    if args.model_hashes is not None:
        import dataclasses

        spec = dataclasses.replace(spec, model_hashes=args.model_hashes.resolve())
    result = build_image(spec, load_lock(args.lock), args.output, site_packages=args.site_packages)
    print(f"kernel:    {result.kernel}")
    print(f"initramfs: {result.initramfs}")
    print(f"manifest:  {result.manifest} ({result.entries} entries)")
    print(f"size:      {result.size:,} bytes compressed, {result.uncompressed_size:,} unpacked")
    print(result.sha256)
    return 0
