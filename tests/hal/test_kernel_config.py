"""The kernel-config check for an SEV-SNP guest (cube_stack.hal.kernel, `cube-stack hal check-kernel`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cube_stack.cli import main as cube_stack_main
from cube_stack.hal.kernel import REQUIREMENTS, check_kernel_config

DEBIAN_CONFIGS = sorted(Path("/boot").glob("config-*-amd64"))


def config(version: str, **options: str) -> str:
    """A minimal .config that has every requirement built in, with ``options`` overriding it."""
    lines = [
        "#",
        "# Automatically generated file; DO NOT EDIT.",
        f"# Linux/x86 {version} Kernel Configuration",
        "#",
    ]
    values = {need.option: "y" for need in REQUIREMENTS} | options
    for option, value in values.items():
        lines.append(f"# CONFIG_{option} is not set" if value == "n" else f"CONFIG_{option}={value}")
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(
    not DEBIAN_CONFIGS, reason="no Debian kernel in /boot (.ci/run installs linux-image-amd64)"
)
def test_debians_kernel_fits_with_its_modules_in_the_initramfs() -> None:
    check = check_kernel_config(DEBIAN_CONFIGS[-1].read_text())
    assert check.ok, check.missing
    # Debian 12 builds the SEV guest driver and virtio as modules: the image must carry and load them.
    assert "sev-guest" in check.modules and "virtio_net" in check.modules


def test_each_missing_option_is_named_with_its_reason() -> None:
    check = check_kernel_config(config("6.1.0", AMD_MEM_ENCRYPT="n", EFI_STUB="m", SEV_GUEST="n"))
    missing = {option: (found, why) for option, found, why in check.missing}
    assert set(missing) == {"CONFIG_AMD_MEM_ENCRYPT", "CONFIG_EFI_STUB", "CONFIG_SEV_GUEST"}
    assert missing["CONFIG_EFI_STUB"][0] == "m" and "wanted y" in missing["CONFIG_EFI_STUB"][1]
    assert missing["CONFIG_SEV_GUEST"][0] == "not set" and "/dev/sev-guest" in missing["CONFIG_SEV_GUEST"][1]
    assert not check.ok


def test_configfs_tsm_is_required_only_where_the_kernel_has_it() -> None:
    old = check_kernel_config(config("6.1.0", TSM_REPORTS="n"))
    new = check_kernel_config(config("6.8.2", TSM_REPORTS="n"))
    assert old.ok
    assert [option for option, _, _ in new.missing] == ["CONFIG_TSM_REPORTS"]
    assert check_kernel_config(config("6.8.2", TSM_REPORTS="m", CONFIGFS_FS="m")).modules == (
        "tsm",
        "configfs",
    )


def test_the_command_exits_1_and_says_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "config"
    bad.write_text(config("6.1.0", SEV_GUEST="n"))
    assert cube_stack_main(["hal", "check-kernel", str(bad)]) == 1
    assert "MISSING CONFIG_SEV_GUEST (found not set)" in capsys.readouterr().out
    good = tmp_path / "good"
    good.write_text(config("6.1.0", SEV_GUEST="m"))
    assert cube_stack_main(["hal", "check-kernel", str(good)]) == 0
    assert "modules for the initramfs: sev-guest" in capsys.readouterr().out
