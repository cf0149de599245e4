"""The launcher's QEMU argv carries exactly what the measurement was computed from."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cube_stack.cli import main as cube_stack_main
from cube_stack.hal import HalError
from cube_stack.hal.deployment import LaunchInputs, load_deployment
from cube_stack.hal.launch import qemu_argv
from cube_stack.hal.measure import launch_measurement

SCRIPT = Path(__file__).resolve().parents[2] / "hal" / "scripts" / "launch-cvm.sh"


def options(argv: list[str], flag: str) -> list[str]:
    """Return every value given to ``flag`` in ``argv``."""
    return [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == flag]


def properties(value: str) -> tuple[str, dict[str, str]]:
    """Split a QEMU ``type,key=value,...`` option into its type and properties."""
    kind, *rest = value.split(",")
    return kind, dict(item.split("=", 1) for item in rest)


def launch_inputs_from_argv(argv: list[str]) -> LaunchInputs:
    """Read back, from QEMU's argv alone, every input SEV-SNP's launch measurement covers."""
    (machine,) = options(argv, "-machine")
    assert properties(machine)[1]["confidential-guest-support"] == "sev0"
    snp = [properties(o)[1] for o in options(argv, "-object") if o.startswith("sev-snp-guest,")]
    assert len(snp) == 1 and snp[0]["id"] == "sev0" and snp[0]["kernel-hashes"] == "on"
    (firmware,) = options(argv, "-bios")
    (kernel,) = options(argv, "-kernel")
    initrd = options(argv, "-initrd")
    (vcpus,) = options(argv, "-smp")
    (vcpu_type,) = options(argv, "-cpu")
    cmdline = options(argv, "-append")
    # Upstream QEMU requests no VMSA features: the guest gets SNPActive alone.
    return LaunchInputs(
        Path(firmware), Path(kernel), Path(initrd[0]) if initrd else None, cmdline[0] if cmdline else "",
        int(vcpus), vcpu_type, guest_features=0x1,
    )  # fmt: skip


def test_the_launch_argv_carries_every_measured_input_of_the_deployment(sample):
    deployment = load_deployment(sample())
    argv = qemu_argv(deployment)
    assert launch_inputs_from_argv(argv) == deployment.launch
    assert launch_measurement(launch_inputs_from_argv(argv)) == launch_measurement(deployment.launch)
    (snp,) = [properties(o)[1] for o in options(argv, "-object") if o.startswith("sev-snp-guest,")]
    assert base64.b64decode(snp["host-data"]) == deployment.host_data
    assert (snp["cbitpos"], snp["reduced-phys-bits"]) == ("51", "1")


def test_the_drift_check_sees_a_changed_argument(sample):
    """If the launcher dropped or changed a measured argument, the read-back would differ."""
    deployment = load_deployment(sample())
    argv = qemu_argv(deployment)
    for flag, value in (("-smp", "3"), ("-cpu", "EPYC-v4"), ("-append", "console=ttyS1")):
        changed = list(argv)
        changed[changed.index(flag) + 1] = value
        assert launch_inputs_from_argv(changed) != deployment.launch


def test_the_sev_argv_is_upstream_qemu_syntax(sample):
    deployment = load_deployment(sample())
    argv = qemu_argv(deployment)
    assert options(argv, "-machine") == ["q35,confidential-guest-support=sev0,memory-backend=ram1"]
    memory = [o for o in options(argv, "-object") if o.startswith("memory-backend-memfd,")]
    assert memory == ["memory-backend-memfd,id=ram1,size=2048M,share=true,prealloc=false"]
    assert options(argv, "-m") == ["2048M"] and options(argv, "-accel") == ["kvm"]
    assert options(argv, "-netdev") == ["user,id=net0,hostfwd=tcp:127.0.0.1:18443-:8443"]
    assert not any("memfd-private" in a or "kvm-type" in a or "pflash" in a for a in argv)


def test_without_host_data_the_guest_gets_none(sample):
    argv = qemu_argv(load_deployment(sample(host_data=None)))
    assert not any("host-data" in a for a in argv)


def test_no_sev_mode_has_no_confidential_guest_and_runs_under_tcg(sample):
    deployment = load_deployment(sample())
    argv = qemu_argv(deployment, sev=False)
    assert options(argv, "-machine") == ["q35"] and options(argv, "-accel") == ["tcg"]
    assert not any(
        "sev-snp" in a or "sev0" in a or "confidential" in a or "iommu_platform" in a for a in argv
    )
    assert options(argv, "-bios") == [] and options(argv, "-cpu") == ["max"]
    launch = deployment.launch
    assert options(argv, "-kernel") == [str(launch.kernel)] and options(argv, "-initrd") == [
        str(launch.initramfs)
    ]
    assert options(argv, "-append") == [launch.cmdline] and options(argv, "-smp") == ["2"]


def test_guest_features_qemu_cannot_request_are_refused(sample):
    with pytest.raises(HalError) as caught:
        qemu_argv(load_deployment(sample(guest_features="0x21")))
    assert caught.value.code == "hal.guest_features_unsupported"
    assert qemu_argv(load_deployment(sample(guest_features="0x21")), sev=False)


def test_launch_args_prints_the_argv_nul_separated(sample, capsys):
    path = sample()
    assert cube_stack_main(["hal", "launch-args", "--deployment", str(path), "--null"]) == 0
    out = capsys.readouterr().out
    assert out.split("\0")[:-1] == qemu_argv(load_deployment(path))


def fake_qemu(tmp_path: Path, version: str) -> tuple[Path, Path]:
    record = tmp_path / "qemu-args"
    qemu = tmp_path / "qemu-system-x86_64"
    qemu.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --version ]; then echo "QEMU emulator version {version}"; exit 0; fi\n'
        f'for a in "$@"; do printf "%s\\0" "$a"; done > {record}\n'
    )
    qemu.chmod(0o755)
    return qemu, record


def run_script(*args: str, qemu: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "QEMU": str(qemu), "CUBE_STACK": str(Path(sys.executable).parent / "cube-stack")}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.skipif(shutil.which("bash") is None, reason="launch-cvm.sh is a bash script")
@pytest.mark.parametrize("mode", [[], ["--no-sev"]])
def test_launch_cvm_execs_qemu_with_the_argv(sample, tmp_path: Path, mode: list[str]):
    path = sample(cmdline="console=ttyS0 cube.note='two words'")
    qemu, record = fake_qemu(tmp_path, "9.1.0")
    done = run_script(*mode, str(path), "--", "-S", qemu=qemu)
    assert done.returncode == 0, done.stderr
    expected = qemu_argv(load_deployment(path), sev=not mode)
    assert record.read_text().split("\0")[:-1] == [*expected, "-S"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="launch-cvm.sh is a bash script")
def test_launch_cvm_refuses_an_old_qemu_and_an_invalid_description(sample, tmp_path: Path):
    path = sample()
    old, record = fake_qemu(tmp_path, "7.2.0")
    done = run_script(str(path), qemu=old)
    assert done.returncode == 1 and ">= 9.1" in done.stderr and not record.exists()
    path.write_text(path.read_text().replace("vcpus = 2", "vcpus = 0"))
    new, record = fake_qemu(tmp_path, "9.2.0")
    done = run_script(str(path), qemu=new)
    assert done.returncode != 0 and "[hal.deployment_invalid]" in done.stderr and not record.exists()


@pytest.mark.parametrize("sev", [True, False])
def test_the_config_disk_is_attached_read_only_and_bounced_under_snp(sample, sev: bool):
    path = sample(config_disk="config.tar")
    (path.parent / "config.tar").write_bytes(b"\0" * 1024)
    argv = qemu_argv(load_deployment(path), sev=sev)
    (drive,) = options(argv, "-drive")
    assert drive == f"file={path.parent / 'config.tar'},format=raw,if=none,id=config,readonly=on"
    (disk,) = [d for d in options(argv, "-device") if d.startswith("virtio-blk-pci")]
    assert ("iommu_platform=true" in disk) is sev  # an SNP guest's virtio DMA goes through bounce buffers
    if sev:  # the disk is not measured: the measured inputs read back from the argv are unchanged
        assert launch_inputs_from_argv(argv) == load_deployment(path).launch


def test_without_a_config_disk_no_drive_is_attached(sample):
    assert options(qemu_argv(load_deployment(sample())), "-drive") == []


def test_a_missing_config_disk_is_named(sample):
    with pytest.raises(HalError, match="config_disk"):
        load_deployment(sample(config_disk="absent.tar"))
