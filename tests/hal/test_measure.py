"""`cube-stack policy measure`: stable, sensitive to every measured byte, strict about the firmware."""

from __future__ import annotations

import glob
import json
import shutil
from pathlib import Path

import pytest

from cube_stack.cli import main as cube_stack_main
from cube_stack.hal import HalError
from cube_stack.hal.deployment import LaunchInputs, load_deployment
from cube_stack.hal.measure import launch_measurement
from cube_wire.host_data import host_data_from_file
from cube_wire.policy import load_policy
from tests.hal.conftest import AMDSEV, OVMFX64, SETTINGS

DEBIAN_OVMF = sorted(glob.glob("/usr/share/OVMF/OVMF_CODE*.fd") + glob.glob("/usr/share/ovmf/OVMF.fd"))
DEBIAN_KERNELS = sorted(glob.glob("/boot/vmlinuz-*"))


def measure(*args: str, capsys) -> tuple[int, str, str]:
    status = cube_stack_main(["policy", "measure", *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def inputs(tmp_path: Path) -> LaunchInputs:
    if not AMDSEV.is_file():
        pytest.skip("shared/testvectors/snp/measure is absent")
    kernel, initramfs = tmp_path / "vmlinuz", tmp_path / "initramfs.cpio"
    kernel.write_bytes(bytes(range(256)) * 32)
    initramfs.write_bytes(b"070701" + bytes(range(256)) * 16)
    return LaunchInputs(AMDSEV, kernel, initramfs, "console=ttyS0 panic=-1", 2, "EPYC-v4")


def test_the_same_inputs_always_give_the_same_measurement(inputs: LaunchInputs, capsys):
    first = launch_measurement(inputs)
    assert launch_measurement(inputs) == first and len(first) == 48
    args = ["--ovmf", str(inputs.firmware), "--kernel", str(inputs.kernel), "--initrd", str(inputs.initramfs)]
    args += ["--append", inputs.cmdline, "--vcpus", "2", "--vcpu-type", "EPYC-v4"]
    status, out, _ = measure(*args, capsys=capsys)
    assert status == 0 and out.splitlines()[-1] == first.hex()


def flip_one_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_one_changed_byte_of_initramfs_kernel_or_cmdline_changes_the_measurement(inputs: LaunchInputs):
    before = launch_measurement(inputs)
    assert inputs.initramfs is not None and inputs.kernel is not None
    flip_one_byte(inputs.initramfs, 1000)
    after_initramfs = launch_measurement(inputs)
    flip_one_byte(inputs.kernel, 7)
    after_kernel = launch_measurement(inputs)
    changed_cmdline = LaunchInputs(**{**inputs.__dict__, "cmdline": "console=ttyS0 panic=-2"})
    assert len({before, after_initramfs, after_kernel, launch_measurement(changed_cmdline)}) == 4


@pytest.mark.parametrize(
    "change", [{"vcpus": 3}, {"vcpu_type": "EPYC-Genoa"}, {"guest_features": 0x21}, {"initramfs": None}]
)
def test_every_launch_setting_is_measured(inputs: LaunchInputs, change: dict[str, object]):
    assert launch_measurement(LaunchInputs(**{**inputs.__dict__, **change})) != launch_measurement(inputs)


def test_the_ovmfx64_fixture_is_refused_with_the_fix_named(inputs: LaunchInputs, capsys):
    with pytest.raises(HalError) as caught:
        launch_measurement(LaunchInputs(**{**inputs.__dict__, "firmware": OVMFX64}))
    assert caught.value.code == "hal.ovmf_no_kernel_hashes"
    status, out, err = measure(
        "--ovmf", str(OVMFX64), "--kernel", str(inputs.kernel), "--vcpus", "1", "--vcpu-type", "EPYC-v4",
        capsys=capsys,
    )  # fmt: skip
    assert status == 1 and out == ""
    assert (
        "no SNP kernel-hashes table" in err
        and "AmdSevX64.dsc" in err
        and "[hal.ovmf_no_kernel_hashes]" in err
    )


@pytest.mark.skipif(not DEBIAN_OVMF, reason="Debian's ovmf package is not installed (apt-get install ovmf)")
@pytest.mark.parametrize("firmware", DEBIAN_OVMF)
def test_debians_ovmf_is_refused(firmware: str, inputs: LaunchInputs):
    with pytest.raises(HalError) as caught:
        launch_measurement(LaunchInputs(**{**inputs.__dict__, "firmware": Path(firmware)}))
    assert caught.value.code == "hal.ovmf_no_kernel_hashes"


def test_a_file_that_is_no_ovmf_is_refused(inputs: LaunchInputs, tmp_path: Path):
    vars_file = tmp_path / "OVMF_VARS.fd"
    vars_file.write_bytes(bytes(4096))
    with pytest.raises(HalError) as caught:
        launch_measurement(LaunchInputs(**{**inputs.__dict__, "firmware": vars_file}))
    assert caught.value.code == "hal.ovmf_invalid"


def test_output_writes_a_policy_pinning_the_measurement_and_host_data(inputs, tmp_path: Path, capsys):
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(SETTINGS))
    policy_path = tmp_path / "policy.json"
    args = ["--ovmf", str(inputs.firmware), "--kernel", str(inputs.kernel), "--initrd", str(inputs.initramfs)]
    args += ["--append", inputs.cmdline, "--vcpus", "2", "--vcpu-type", "EPYC-v4"]
    status, out, _ = measure(*args, "--host-data-from", str(settings), "-o", str(policy_path), capsys=capsys)
    assert status == 0
    measurement = out.splitlines()[-1]
    assert measurement == launch_measurement(inputs).hex()
    policy = load_policy(json.loads(policy_path.read_text()))
    assert policy.measurements == (bytes.fromhex(measurement),)
    assert policy.host_data == (host_data_from_file(settings),)
    assert policy.guest_policy_bits["debug"] == "forbidden" and policy.root_of_trust == "amd"


def test_without_host_data_the_policy_leaves_it_unchecked(inputs, tmp_path: Path, capsys):
    policy_path = tmp_path / "policy.json"
    args = ["--ovmf", str(inputs.firmware), "--kernel", str(inputs.kernel), "--vcpus", "1"]
    status, _, _ = measure(*args, "--vcpu-type", "EPYC-v4", "-o", str(policy_path), capsys=capsys)
    assert status == 0 and load_policy(json.loads(policy_path.read_text())).host_data is None


def test_deployment_gives_what_the_flags_give(sample, capsys):
    path = sample()
    deployment = load_deployment(path)
    status, out, _ = measure("--deployment", str(path), "-o", str(path.parent / "p.json"), capsys=capsys)
    assert status == 0 and out.splitlines()[-1] == launch_measurement(deployment.launch).hex()
    launch = deployment.launch
    flags = [
        "--ovmf",
        str(launch.firmware),
        "--kernel",
        str(launch.kernel),
        "--initrd",
        str(launch.initramfs),
    ]
    flags += ["--append", launch.cmdline, "--vcpus", str(launch.vcpus), "--vcpu-type", str(launch.vcpu_type)]
    assert measure(*flags, capsys=capsys)[1].splitlines()[-1] == out.splitlines()[-1]
    policy = load_policy(json.loads((path.parent / "p.json").read_text()))
    assert policy.host_data == (deployment.host_data,)


def test_deployment_and_flags_together_are_refused(sample, capsys):
    status, _, err = measure("--deployment", str(sample()), "--vcpus", "4", capsys=capsys)
    assert status == 1 and "--vcpus" in err and "[hal.usage]" in err


@pytest.mark.skipif(
    not DEBIAN_KERNELS, reason="no Debian kernel in /boot (apt-get install linux-image-amd64)"
)
def test_a_real_debian_kernel_measures_stably_and_byte_exactly(tmp_path: Path):
    kernel = tmp_path / "vmlinuz"
    shutil.copy(DEBIAN_KERNELS[-1], kernel)
    initramfs = tmp_path / "initramfs.cpio"
    initramfs.write_bytes(b"070701" + bytes(4096))
    inputs = LaunchInputs(AMDSEV, kernel, initramfs, "console=ttyS0", 2, "EPYC-v4")
    first = launch_measurement(inputs)
    assert launch_measurement(inputs) == first
    flip_one_byte(kernel, kernel.stat().st_size // 2)
    assert launch_measurement(inputs) != first


@pytest.mark.parametrize(
    "args",
    [
        ["--vcpus", "1", "--vcpu-type", "EPYC-Zen9"],
        ["--vcpus", "1"],
        ["--vcpus", "0", "--vcpu-type", "EPYC-v4"],
        ["--vcpus", "1", "--vcpu-type", "EPYC-v4", "--initrd", "x"],
        ["--ovmf-only", "--vcpus", "1"],
    ],
)
def test_bad_flags_are_usage_errors_not_tracebacks(args: list[str], capsys):
    status, _, err = measure("--ovmf", str(AMDSEV), *args, capsys=capsys)
    assert status == 1 and "[hal.usage]" in err
