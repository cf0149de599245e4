"""The deployment description is read strictly: every error names its field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cube_stack.hal.deployment import DeploymentError, Port, load_deployment
from cube_wire.host_data import host_data_from_file


def test_a_sample_deployment_loads(sample):
    path = sample()
    deployment = load_deployment(path)
    launch = deployment.launch
    assert launch.firmware == path.parent / "OVMF.fd" and launch.kernel == path.parent / "vmlinuz"
    assert (launch.vcpus, launch.vcpu_type, launch.guest_features) == (2, "EPYC-Milan", 0x1)
    assert deployment.memory == "2048M" and deployment.ports == (Port(18443, 8443),)
    assert deployment.host_data == host_data_from_file(path.parent / "settings.json")


def test_guest_features_default_to_snp_active_alone(sample):
    assert load_deployment(sample(guest_features=None)).launch.guest_features == 0x1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": 2}, "version"),
        ({"vcpus": 0}, "vcpus"),
        ({"vcpus": "2"}, "vcpus"),
        ({"vcpus": None}, "vcpus"),
        ({"vcpu_type": "EPYC-Zen9"}, "vcpu_type"),
        ({"guest_features": "0x20"}, "guest_features"),
        ({"guest_features": "zz"}, "guest_features"),
        ({"firmware": "missing.fd"}, "firmware"),
        ({"kernel": None}, "kernel"),
        ({"initramfs": 7}, "initramfs"),
        ({"cmdline": "a\nb"}, "cmdline"),
        ({"cmdline": None}, "cmdline"),
        ({"memory": "2T"}, "memory"),
        ({"host_data": "vmlinuz"}, "host_data"),
        ({"debug": True}, "debug"),
    ],
)
def test_an_invalid_field_is_named(sample, change: dict[str, object], field: str):
    with pytest.raises(DeploymentError) as caught:
        load_deployment(sample(**change))
    assert caught.value.code == "hal.deployment_invalid"
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("ports", "field"),
    [
        ("[[ports]]\nhost = 0\nguest = 1\n", "ports[0].host"),
        ("[[ports]]\nhost = 1\n", "ports[0].guest"),
        ('[[ports]]\nhost = 1\nguest = 2\nhost_address = "example.com"\n', "ports[0].host_address"),
        ('[[ports]]\nhost = 1\nguest = 2\nproto = "udp"\n', "ports[0].proto"),
        ("ports = 5\n", "ports"),
    ],
)
def test_an_invalid_port_is_named(sample, ports: str, field: str):
    path = sample()
    text = path.read_text()
    path.write_text(text[: text.index("[[ports]]")] + ports)
    with pytest.raises(DeploymentError) as caught:
        load_deployment(path)
    assert caught.value.field == field


def test_a_file_that_is_not_toml_is_named(tmp_path: Path):
    path = tmp_path / "deployment.toml"
    path.write_text("vcpus = [")
    with pytest.raises(DeploymentError) as caught:
        load_deployment(path)
    assert caught.value.field == str(path)


def test_bad_host_data_settings_name_the_field(sample):
    path = sample()
    (path.parent / "settings.json").write_text(json.dumps({"version": 1, "domain": "d"}))
    with pytest.raises(DeploymentError) as caught:
        load_deployment(path)
    assert caught.value.field == "host_data" and "auth_endpoint" in caught.value.message


def test_every_accepted_vcpu_type_has_a_signature_in_sev_snp_measure():
    from sevsnpmeasure.vcpu_types import CPU_SIGS

    from cube_stack.hal.deployment import VCPU_TYPES

    assert set(VCPU_TYPES) <= set(CPU_SIGS)


@pytest.mark.parametrize(
    "cmdline",
    [
        "console=ttyS0 rdinit=/bin/sh",
        "console=ttyS0 init=/usr/bin/python3.11",
        "console=ttyS0 debug",
        "earlyprintk=serial console=ttyS0",
        "console=ttyS0 kgdboc=ttyS0,115200 kgdbwait",
        "console=ttyS0 sysrq_always_enabled",
        "console=ttyS0 single",
        "console=ttyS0 nokaslr",
        "console=ttyS0 mem_encrypt=off",
        "console=ttyS0 dyndbg=+p",
        "console=ttyS0 virtio_net.dyndbg=+p",
    ],
)
def test_debug_options_on_the_measured_command_line_are_refused(sample, cmdline: str):
    with pytest.raises(DeploymentError) as caught:
        load_deployment(sample(cmdline=cmdline))
    assert caught.value.field == "cmdline"
    assert "boots without it" in caught.value.message


def test_the_image_boot_options_are_allowed(sample):
    cmdline = "console=ttyS0 panic=-1 quiet mem_encrypt=on cube.attestation=simulated cube.auth_grpc=a:8181"
    assert load_deployment(sample(cmdline=cmdline)).launch.cmdline == cmdline
