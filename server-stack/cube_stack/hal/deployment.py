"""One description of a CVM deployment, read strictly from TOML; the launcher and the measurement both use it.

Everything the launch measurement covers is in :class:`LaunchInputs` (firmware, kernel, initramfs,
command line, vCPU count and type, guest features, VMM); :class:`Deployment` adds what the launcher
needs besides (memory, forwarded ports) and the HOST_DATA settings file, which the report carries and
the policy pins. Example (paths are relative to the description's directory)::

    version = 1
    firmware = "OVMF.amdsev.fd"      # edk2 AmdSevX64 build: it measures kernel, initrd and cmdline
    kernel = "vmlinuz"
    initramfs = "initramfs.cpio.gz"
    cmdline = "console=ttyS0"
    vcpus = 2
    vcpu_type = "EPYC-v4"            # QEMU -cpu model; its CPUID signature is in each VMSA
    guest_features = "0x1"           # default; see GUEST_FEATURES_DEFAULT
    memory = "2G"                    # default
    host_data = "settings.json"      # optional: cube_wire.host_data settings, HOST_DATA = their digest
    [[ports]]                        # optional, repeatable: host_address defaults to 127.0.0.1
    host = 8443
    guest = 8443
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cube_stack.hal import HalError
from cube_wire.host_data import HostDataError, host_data_from_file

DESCRIPTION_VERSION = 1
# QEMU's EPYC models that sev-snp-measure knows the CPUID signature of (its vcpu_types.CPU_SIGS).
VCPU_TYPES = (
    "EPYC", "EPYC-v1", "EPYC-v2", "EPYC-v3", "EPYC-v4", "EPYC-IBPB",
    "EPYC-Rome", "EPYC-Rome-v1", "EPYC-Rome-v2", "EPYC-Rome-v3",
    "EPYC-Milan", "EPYC-Milan-v1", "EPYC-Milan-v2", "EPYC-Genoa", "EPYC-Genoa-v1", "EPYC-Turin",
)  # fmt: skip
VMM_TYPES = ("QEMU", "ec2", "gce")
# The VMSA SEV_FEATURES upstream QEMU >= 9.1 gives an SNP guest: it creates the VM with KVM_SEV_INIT2 and
# requests no VMSA features, so KVM sets SNPActive (bit 0) alone. 0x21 (SNPActive | DebugSwap) is what
# the older AMD fork and KVM_SEV_ES_INIT hosts with debug_swap on produced; it is accepted here for
# measuring such hosts, and the launcher refuses it because it cannot request DebugSwap.
GUEST_FEATURES_DEFAULT = 0x1
_MEMORY = re.compile(r"[1-9][0-9]*[MG]")


class DeploymentError(HalError):
    """The deployment description is invalid; ``field`` names the key."""

    code = "hal.deployment_invalid"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"deployment '{field}': {message}")
        self.field = field


@dataclass(frozen=True)
class LaunchInputs:
    """Everything SEV-SNP's launch measurement covers; ``kernel`` None measures the firmware alone."""

    firmware: Path
    kernel: Path | None
    initramfs: Path | None  # None: QEMU's and the measurement's empty initrd
    cmdline: str  # "" is measured as a lone NUL, as QEMU passes no -append
    vcpus: int
    vcpu_type: str | None  # None only for the ec2 and gce VMMs, whose VMSAs carry a fixed signature
    guest_features: int = GUEST_FEATURES_DEFAULT
    vmm: str = "QEMU"


@dataclass(frozen=True)
class Port:
    """One TCP port the host forwards into the guest."""

    host: int
    guest: int
    host_address: str = "127.0.0.1"


@dataclass(frozen=True)
class Deployment:
    """A validated deployment description; build it with :func:`load_deployment`."""

    launch: LaunchInputs
    memory: str = "2G"  # QEMU size: a number and M or G
    host_data: bytes | None = None  # HOST_DATA (32 bytes), from the settings file; None: all zero
    host_data_file: Path | None = None
    ports: tuple[Port, ...] = ()
    # The config disk (cube-stack hal config-disk): settings.json and the model files, read-only. Not
    # measured: the guest checks the settings against HOST_DATA and the models against the image's list.
    config_disk: Path | None = None


def load_deployment(path: Path) -> Deployment:
    """Read and validate the TOML description at ``path``; relative paths in it are from its directory."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeploymentError(str(path), f"cannot be read ({exc.strerror})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DeploymentError(str(path), f"not TOML ({exc})") from None
    return parse_deployment(data, base_dir=path.parent)


def parse_deployment(data: Mapping[str, object], *, base_dir: Path) -> Deployment:
    """Validate a parsed description; raise :class:`DeploymentError` naming the first bad field."""
    known = {"version", "firmware", "kernel", "initramfs", "cmdline", "vcpus", "vcpu_type"}
    known |= {"guest_features", "memory", "host_data", "ports", "config_disk"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DeploymentError(unknown[0], f"unknown key; wanted only {sorted(known)}")
    if data.get("version") != DESCRIPTION_VERSION or isinstance(data.get("version"), bool):
        raise DeploymentError("version", f"found {data.get('version')!r}, wanted {DESCRIPTION_VERSION}")
    launch = LaunchInputs(
        firmware=_file(data, "firmware", base_dir),
        kernel=_file(data, "kernel", base_dir),
        initramfs=_file(data, "initramfs", base_dir),
        cmdline=_cmdline(data.get("cmdline", _MISSING)),
        vcpus=_int(data, "vcpus", lo=1, hi=512),
        vcpu_type=_choice(data, "vcpu_type", VCPU_TYPES),
        guest_features=parse_guest_features(data.get("guest_features", hex(GUEST_FEATURES_DEFAULT))),
    )
    memory = data.get("memory", "2G")
    if not isinstance(memory, str) or not _MEMORY.fullmatch(memory):
        raise DeploymentError("memory", f'found {memory!r}, wanted a size such as "2048M" or "4G"')
    host_data_file = _file(data, "host_data", base_dir) if "host_data" in data else None
    host_data = None
    if host_data_file is not None:
        try:
            host_data = host_data_from_file(host_data_file)
        except HostDataError as exc:
            raise DeploymentError("host_data", exc.message) from None
    config_disk = _file(data, "config_disk", base_dir) if "config_disk" in data else None
    return Deployment(launch, memory, host_data, host_data_file, _ports(data.get("ports", [])), config_disk)


_MISSING = object()


def parse_guest_features(value: object) -> int:
    """Return SEV_FEATURES from a hex string (``"0x1"``) or an integer; bit 0 (SNPActive) must be set."""
    if isinstance(value, str):
        try:
            value = int(value, 16)
        except ValueError:
            raise DeploymentError("guest_features", f'found {value!r}, wanted hex such as "0x1"') from None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
        raise DeploymentError("guest_features", f'found {value!r}, wanted a 64-bit value such as "0x1"')
    if not value & 1:
        raise DeploymentError("guest_features", f"found {value:#x}, wanted bit 0 (SNPActive) set")
    return value


def _file(data: Mapping[str, object], key: str, base_dir: Path) -> Path:
    value = data.get(key, _MISSING)
    if value is _MISSING:
        raise DeploymentError(key, "missing")
    if not isinstance(value, str) or not value:
        raise DeploymentError(key, f"found {value!r}, wanted a file path")
    path = base_dir / value
    if not path.is_file():
        raise DeploymentError(key, f"{path} is not a file")
    return path


def _cmdline(value: object) -> str:
    if value is _MISSING:
        raise DeploymentError("cmdline", 'missing ("" for an empty command line)')
    if not isinstance(value, str) or any(c in value for c in "\0\n\r"):
        raise DeploymentError("cmdline", f"found {value!r}, wanted one line of text")
    for word in value.split():
        reason = debug_option(word)
        if reason:
            raise DeploymentError("cmdline", f"{word!r} {reason}; a measured CVM image boots without it")
    return value


# Kernel command line options that open a way into the guest or weaken it. The command line is measured,
# so such an image would have its own measurement, but nothing a client should ever be asked to trust.
_DEBUG_OPTIONS = {
    "init": "starts another program as PID 1 instead of the image's /init",
    "rdinit": "starts another program as PID 1 instead of the image's /init",
    "debug": "turns on kernel debug output",
    "earlyprintk": "turns on early kernel debug output",
    "kgdboc": "attaches the kernel debugger to a console",
    "kgdbwait": "stops the kernel for a debugger",
    "kgdbdbgp": "attaches the kernel debugger",
    "sysrq_always_enabled": "lets the console send magic SysRq commands",
    "single": "asks for single-user mode",
    "nokaslr": "turns off kernel address randomisation",
    "ignore_loglevel": "logs everything, whatever the level",
    "cube.debug_shell": "asks for a shell",
}


def debug_option(word: str) -> str:
    """Return why ``word`` (one command line option) is refused, or "" when it is fine."""
    key = word.split("=", 1)[0]
    if key in _DEBUG_OPTIONS:
        return _DEBUG_OPTIONS[key]
    if key == "mem_encrypt" and word != "mem_encrypt=on":
        return "turns memory encryption off or leaves it to chance"
    if key.endswith((".debug", ".dyndbg")) or key == "dyndbg":
        return "turns on debug output"
    return ""


def _int(data: Mapping[str, object], key: str, *, lo: int, hi: int, prefix: str = "") -> int:
    value = data.get(key, _MISSING)
    if value is _MISSING:
        raise DeploymentError(prefix + key, "missing")
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise DeploymentError(prefix + key, f"found {value!r}, wanted an integer from {lo} to {hi}")
    return value


def _choice(data: Mapping[str, object], key: str, choices: tuple[str, ...]) -> str:
    value = data.get(key, _MISSING)
    if value is _MISSING:
        raise DeploymentError(key, "missing")
    if value not in choices:
        raise DeploymentError(key, f"found {value!r}, wanted one of {list(choices)}")
    return str(value)


def _ports(value: object) -> tuple[Port, ...]:
    if not isinstance(value, list):
        raise DeploymentError("ports", f"found {value!r}, wanted a list of tables ([[ports]])")
    ports = []
    for i, entry in enumerate(value):
        field = f"ports[{i}]"
        if not isinstance(entry, dict):
            raise DeploymentError(field, f"found {entry!r}, wanted a table with host and guest")
        unknown = sorted(set(entry) - {"host", "guest", "host_address"})
        if unknown:
            raise DeploymentError(f"{field}.{unknown[0]}", "unknown key; wanted host, guest, host_address")
        host = _int(entry, "host", lo=1, hi=65535, prefix=f"{field}.")
        guest = _int(entry, "guest", lo=1, hi=65535, prefix=f"{field}.")
        address = entry.get("host_address", "127.0.0.1")
        try:
            ipaddress.IPv4Address(address if isinstance(address, str) else "")
        except ValueError:
            message = f"found {address!r}, wanted an IPv4 address (QEMU's hostfwd syntax)"
            raise DeploymentError(f"{field}.host_address", message) from None
        ports.append(Port(host, guest, str(address)))
    return tuple(ports)
