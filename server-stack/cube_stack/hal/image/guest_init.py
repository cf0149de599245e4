#!/usr/bin/python3.11 -IB
"""``/init`` of the CVM image: the first and only program the kernel starts (PID 1).

It uses the standard library (and ``cube_wire.host_data``, the digest rule clients share), so nothing
it imports can be missing when it runs, and it does exactly this, in order, then supervises:

1. mounts ``/proc``, ``/sys``, ``/dev`` (devtmpfs), ``/run`` and ``/tmp`` (tmpfs), and configfs when
   the kernel has it (configfs-tsm reports);
2. loads the kernel modules listed in ``/etc/cube/modules`` (built-in list, in dependency order:
   the SEV guest driver, virtio), with ``finit_module`` — there is no ``modprobe`` in the image;
3. brings up ``lo`` and the first Ethernet interface with the address on the kernel command line
   (``cube.ip=10.0.2.15/24 cube.gw=10.0.2.2``; QEMU user networking's defaults when absent);
4. reads the deployment settings from the config disk (``/dev/vda``, an uncompressed tar the host
   provides with ``settings.json`` and the model files, which the runtime reads from the disk itself)
   and checks them: their SHA-256 is HOST_DATA, which the attestation report carries, so a host that
   lies about the settings makes every client's policy check fail (and, with SEV-SNP, the proxy
   compares them with its own report before serving);
5. starts the attestation agent's check and the proxy (``python -m cube_stack.proxy``), waits until it
   listens (it attests once before listening), then the model runtime on a Unix socket, serving only
   the model files whose SHA-256 is in ``/etc/cube/model-hashes``;
6. reaps children; when a service exits, it logs why and powers the VM off. A half-running stack is
   never left serving.

There is no shell, no getty, no login and no SSH in the image: the console shows this program's log
and the services' logs, nothing reads from it. Kernel command line switches (all measured, since the
command line is part of the launch measurement):

``cube.attestation=sev-snp|simulated`` (default ``sev-snp``: simulated reports exist only for
``--no-sev`` test boots and say SIMULATED everywhere), ``cube.port=8443``, ``cube.ip``, ``cube.gw``,
``cube.dns``, ``cube.threads``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import json
import os
import signal
import socket
import ssl
import struct
import sys
import tarfile
import time
from urllib.parse import urlsplit

from cube_wire.host_data import DeploymentSettings, host_data_digest, parse_deployment_settings

CONFIG_DISK = "/dev/vda"
MODULE_LIST = "/etc/cube/modules"
MODEL_HASHES = "/etc/cube/model-hashes"
RUNTIME_SOCKET = "/run/cube/runtime/runtime.sock"
AUTH_GRPC_CA = "/run/cube/auth-grpc-ca.pem"  # from the settings (auth_grpc_ca), so bound by HOST_DATA
AUTH_GRPC_STUBS = "/usr/lib/cube/auth_grpc_stubs"  # generated at build time: no grpcio-tools in the image

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
SYS_FINIT_MODULE = 313  # x86_64
LINUX_REBOOT_CMD_POWER_OFF = 0x4321FEDC
SIOCGIFFLAGS, SIOCSIFFLAGS = 0x8913, 0x8914
SIOCSIFADDR, SIOCSIFNETMASK, SIOCADDRT = 0x8916, 0x891C, 0x890B
IFF_UP = 0x1
RTF_UP, RTF_GATEWAY = 0x1, 0x2


def log(message: str) -> None:
    """Write one line to the console, prefixed so it stands apart from the services' own lines."""
    sys.stderr.write(f"cube-init: {message}\n")
    sys.stderr.flush()


def power_off(reason: str) -> None:
    """Say why, flush, and power the VM off (PID 1 must never just exit: the kernel would panic)."""
    log(f"powering off: {reason}")
    os.sync()
    _libc.reboot(LINUX_REBOOT_CMD_POWER_OFF)
    while True:  # reboot() does not return for PID 1 unless it failed
        time.sleep(3600)


def mount(source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> None:
    """Mount ``source`` on ``target``, creating the directory; raise OSError on failure."""
    os.makedirs(target, exist_ok=True)
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode() or None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def mount_filesystems() -> None:
    """Mount the kernel's file systems and the writable scratch space (everything else is the initramfs)."""
    nosuid_nodev_noexec = 0x2 | 0x4 | 0x8
    mount("proc", "/proc", "proc", nosuid_nodev_noexec)
    mount("sysfs", "/sys", "sysfs", nosuid_nodev_noexec)
    mount("devtmpfs", "/dev", "devtmpfs", 0x2, "mode=0755")
    mount("tmpfs", "/run", "tmpfs", 0x2 | 0x4, "mode=0755")
    mount("tmpfs", "/tmp", "tmpfs", nosuid_nodev_noexec, "mode=1777")
    if os.path.isdir("/sys/kernel/config"):
        try:
            mount("configfs", "/sys/kernel/config", "configfs", nosuid_nodev_noexec)
        except OSError as exc:
            log(f"configfs not mounted ({exc.strerror}); the agent uses /dev/sev-guest")


def load_modules(list_file: str = MODULE_LIST, *, simulated: bool = False) -> None:
    """Load each module of ``list_file`` (paths, dependency order); an already loaded one is fine.

    Without SEV-SNP the ``sev-guest`` driver finds no device (ENODEV): fatal unless the measured command
    line asked for simulated attestation, since the proxy could not attest anyway.
    """
    if not os.path.exists(list_file):
        return
    with open(list_file) as listing:
        paths = [line.strip() for line in listing if line.strip() and not line.startswith("#")]
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if _libc.syscall(SYS_FINIT_MODULE, fd, b"", 0) != 0:
                err = ctypes.get_errno()
                if err == 19 and simulated and "sev-guest" in path:  # ENODEV: not an SNP guest
                    log("no SEV-SNP guest device: attestation is SIMULATED (cube.attestation=simulated)")
                elif err != 17:  # EEXIST: built in or loaded already
                    raise OSError(err, f"loading {path}: {os.strerror(err)}")
        finally:
            os.close(fd)
    log(f"loaded {len(paths)} kernel modules")


def _ifreq(name: str, payload: bytes) -> bytes:
    return struct.pack("16s", name.encode()) + payload.ljust(24, b"\0")


def _sockaddr_in(address: str) -> bytes:
    return struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton(address))


def interface_up(name: str, address: str | None = None, prefix: int = 0) -> None:
    """Give ``name`` an IPv4 address (when given) and bring it up."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if address is not None:
            fcntl.ioctl(sock, SIOCSIFADDR, _ifreq(name, _sockaddr_in(address)))
            mask = socket.inet_ntoa(struct.pack("!I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF))
            fcntl.ioctl(sock, SIOCSIFNETMASK, _ifreq(name, _sockaddr_in(mask)))
        flags = struct.unpack_from("H", fcntl.ioctl(sock, SIOCGIFFLAGS, _ifreq(name, b"")), 16)[0]
        fcntl.ioctl(sock, SIOCSIFFLAGS, _ifreq(name, struct.pack("H", flags | IFF_UP)))


def default_route(gateway: str) -> None:
    """Add ``default via gateway`` (struct rtentry, native layout)."""
    any_address = _sockaddr_in("0.0.0.0")
    entry = struct.pack(
        "@L16s16s16sHhLPhPLLH",
        0,
        any_address,
        _sockaddr_in(gateway),
        any_address,
        RTF_UP | RTF_GATEWAY,
        0,
        0,
        0,  # rt_pad4 (a pointer)
        0,
        0,  # rt_dev (a pointer): any interface
        0,
        0,
        0,
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, SIOCADDRT, entry)


def ethernet_interface() -> str | None:
    """Return the first interface that is not loopback, or None."""
    names = sorted(name for name in os.listdir("/sys/class/net") if name != "lo")
    return names[0] if names else None


def configure_network(options: dict[str, str]) -> None:
    """Loopback, then the Ethernet interface with ``cube.ip``/``cube.gw``/``cube.dns``."""
    interface_up("lo", "127.0.0.1", 8)
    name = ethernet_interface()
    if name is None:
        log("no network interface: only loopback")
        return
    address, _, prefix = options.get("cube.ip", "10.0.2.15/24").partition("/")
    interface_up(name, address, int(prefix or 24))
    gateway = options.get("cube.gw", "10.0.2.2")
    if gateway:
        default_route(gateway)
    if options.get("cube.dns"):
        with open("/run/resolv.conf", "w") as resolv:
            resolv.write(f"nameserver {options['cube.dns']}\n")
    log(f"network: {name} {address}/{prefix or 24} via {gateway or '-'}")


def kernel_options(text: str) -> dict[str, str]:
    """Return the ``cube.*`` options of the kernel command line."""
    options: dict[str, str] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if key.startswith("cube.") and sep:
            options[key] = value
    return options


def canonical_settings(raw: bytes) -> tuple[DeploymentSettings, bytes]:
    """Return the settings and HOST_DATA, by the same code clients run (``cube attest host-data``)."""
    settings = parse_deployment_settings(json.loads(raw))
    return settings, host_data_digest(settings)


def read_settings(device: str = CONFIG_DISK) -> bytes:
    """Return ``settings.json`` from the config disk, an uncompressed tar the host writes.

    Nothing on it is trusted: the settings are bound by HOST_DATA, and the runtime reads the model files
    from the same disk straight into its hashed in-memory copies (``--model-archive``), refusing any whose
    hash the image does not list. Only a regular file named ``settings.json`` of at most 64 KiB counts.
    """
    with tarfile.open(device, mode="r:") as archive:
        for member in archive:
            if member.isfile() and os.path.basename(member.name) == "settings.json" and member.size <= 65536:
                source = archive.extractfile(member)
                if source is not None:
                    return source.read()
    raise ValueError(f"{device} holds no settings.json")


def spawn(argv: list[str], env: dict[str, str]) -> int:
    """Start ``argv`` with ``env`` as a child of init, its output on the console; return its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            os.execve(argv[0], argv, env)
        finally:
            os._exit(127)
    return pid


def wait_for_listener(port: int, pid: int, *, timeout: float) -> None:
    """Wait until something accepts on 127.0.0.1:``port``; raise if ``pid`` dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            raise RuntimeError(f"the proxy exited ({_describe(status)}) before listening")
        if _handshake(port):
            return
        time.sleep(0.2)  # polling a port the child opens; there is nothing to wait on instead
    raise RuntimeError(f"the proxy did not listen on port {port} within {timeout:.0f} s")


def _handshake(port: int) -> bool:
    """Return whether a TLS handshake with 127.0.0.1:``port`` completes (sends nothing, checks nothing).

    A whole handshake, not a bare connect: the proxy counts connections that close before their
    handshake as failures and logs them.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # a readiness probe: the key is attested to clients, not to init
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, context.wrap_socket(raw):
            return True
    except OSError:
        return False


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"


def service_env(settings: DeploymentSettings) -> dict[str, str]:
    """Return the environment shared by the services (no secrets; settings are HOST_DATA-bound)."""
    return {
        "PATH": "/usr/bin",
        "HOME": "/run/cube",
        "LANG": "C.UTF-8",
        "CUBE_LOG_LEVEL": settings.log_level,
        "CUBE_AUTH_GRPC_STUBS": AUTH_GRPC_STUBS,
    }


def proxy_env(
    base: dict[str, str], options: dict[str, str], settings: DeploymentSettings, host_data: bytes
) -> dict[str, str]:
    """Return the proxy's ``CUBE_PROXY_*`` settings.

    The auth service's gRPC address is the settings' ``auth_grpc`` (bound by HOST_DATA), else
    ``cube.auth_grpc=HOST:PORT`` on the measured command line, else the auth endpoint's host on port 8181
    (``cube-stack auth serve``'s default). With the settings' ``auth_grpc_ca`` the proxy speaks TLS to
    it, verified by that CA (:data:`AUTH_GRPC_CA`, written by :func:`write_auth_grpc_ca`).
    """
    auth = settings.auth_endpoint.rstrip("/")
    default_grpc = f"{urlsplit(auth).hostname}:8181"
    mode = options.get("cube.attestation", "sev-snp")
    env = dict(base)
    env.update(
        {
            "CUBE_PROXY_HOST": "0.0.0.0",
            "CUBE_PROXY_PORT": options.get("cube.port", "8443"),
            "CUBE_PROXY_AUTH_URL": auth,
            "CUBE_PROXY_AUTH_GRPC": settings.auth_grpc or options.get("cube.auth_grpc", default_grpc),
            "CUBE_PROXY_OLLAMA_URL": f"unix:{RUNTIME_SOCKET}",
            "CUBE_PROXY_ATTESTATION": "simulated" if mode == "simulated" else "auto",
            "CUBE_PROXY_ATTESTATION_HOST_DATA": host_data.hex(),
        }
    )
    if mode == "simulated":
        env["CUBE_PROXY_ATTESTATION_STATE_DIR"] = "/run/cube/attestation"
    if settings.auth_grpc_ca:
        env["CUBE_PROXY_AUTH_GRPC_CA"] = AUTH_GRPC_CA
    return env


def write_auth_grpc_ca(settings: DeploymentSettings, path: str = AUTH_GRPC_CA) -> None:
    """Write the settings' ``auth_grpc_ca`` (verified PEM, bound by HOST_DATA) where the proxy reads it."""
    if settings.auth_grpc_ca:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(path, "x", encoding="ascii") as out:
            out.write(settings.auth_grpc_ca)


def main() -> None:
    """Run the boot sequence, then reap children until a service exits."""
    started = time.monotonic()
    os.umask(0o077)
    mount_filesystems()
    with open("/proc/cmdline") as cmdline:
        options = kernel_options(cmdline.read())
    load_modules(simulated=options.get("cube.attestation") == "simulated")
    configure_network(options)
    settings, host_data = canonical_settings(read_settings())
    log(f"settings HOST_DATA {host_data.hex()}")
    base = service_env(settings)
    write_auth_grpc_ca(settings)
    python = "/usr/bin/python3.11"
    proxy = spawn([python, "-IBu", "-m", "cube_stack.proxy"], proxy_env(base, options, settings, host_data))
    wait_for_listener(int(options.get("cube.port", "8443")), proxy, timeout=300)
    log(f"proxy listening after {time.monotonic() - started:.1f} s")
    runtime_argv = [python, "-IBu", "-m", "cube_stack.runtime", "--socket", RUNTIME_SOCKET]
    runtime_argv += ["--model-hashes", MODEL_HASHES, "--model-archive", CONFIG_DISK]
    runtime_argv += ["--no-minilm"]  # no torch here: embedding models are GGUF files on the disk
    if options.get("cube.threads"):
        runtime_argv += ["--threads", options["cube.threads"]]
    runtime = spawn(runtime_argv, base)
    services = {proxy: "proxy", runtime: "runtime"}
    log(f"runtime started; boot took {time.monotonic() - started:.1f} s")
    while True:
        pid, status = os.wait()
        if pid in services:
            power_off(f"the {services[pid]} exited ({_describe(status)})")


if __name__ == "__main__":
    if os.getpid() != 1:
        sys.exit("cube-init runs as PID 1 inside the CVM image only")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-Alt-Del on the console does not stop the stack
    try:
        main()
    except BaseException as exc:  # PID 1 must power off, never exit or hang
        power_off(f"{type(exc).__name__}: {exc}")
