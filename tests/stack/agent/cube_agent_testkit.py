"""FAKES of the kernel interfaces the agent talks to, and a helper that verifies evidence like a client.

Neither configfs-tsm nor ``/dev/sev-guest`` exists without SEV-SNP hardware, so the tests run the real
providers against fakes of the kernel's side, named as such:

* :class:`FakeConfigfsTsm` is a :class:`TsmFilesystem` over a directory tree in ``tmp_path``. It does the
  real file I/O through its base class and adds what the kernel would do: ``mkdir`` populates the
  attributes, writes bump ``generation``, reading ``outblob`` produces a report for the current
  ``inblob`` (signed by a simulated chain) and fills ``auxblob``, ``rmdir`` drops the attributes.
* :class:`FakeSevGuestDriver` stands in for the ioctl: it reads the request through the very addresses the
  provider put into ``struct snp_guest_request_ioctl`` and writes the response, the certificates and the
  error codes back the way the sev-guest driver does.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cube_lsp.attestation import (
    TrustedRoot,
    VerifiedReport,
    VerifyOptions,
    parse_cert_table,
    verify_report,
)
from cube_stack.agent import SimulatedProvider, TsmFilesystem
from cube_stack.agent.sevguest import (
    PAGE_SIZE,
    SNP_GET_EXT_REPORT,
    SNP_GUEST_VMM_ERR_INVALID_LEN,
    SnpExtReportReq,
    SnpGuestRequestIoctl,
)

MakeProvider = Callable[..., SimulatedProvider]
"""``make_simulated(**SimulatedOptions fields)``: a provider over the session's root for that product."""


def verify_evidence(
    report: bytes, certificates: bytes | None, provider: SimulatedProvider, *, trust_amd: bool = False
) -> VerifiedReport:
    """Verify a report as the client does, trusting only AMD (optionally) and this simulated root."""
    options = VerifyOptions(trust_amd=trust_amd, extra_roots=(TrustedRoot.from_pem(provider.ark_pem()),))
    return verify_report(report, parse_cert_table(certificates) if certificates else None, options)


class FakeConfigfsTsm(TsmFilesystem):
    """A FAKE configfs-tsm ``report`` directory in a temporary tree, emulating the kernel's behaviour."""

    WRITABLE = ("inblob", "privlevel")

    def __init__(
        self,
        root: Path,
        signer: SimulatedProvider,
        *,
        provider: str = "sev_guest",
        with_certs: bool = True,
        privlevel_floor: int = 0,
    ) -> None:
        self.base = root / "sys" / "kernel" / "config" / "tsm" / "report"
        self.base.mkdir(parents=True)
        self.signer = signer
        self.provider = provider
        self.with_certs = with_certs
        self.privlevel_floor = privlevel_floor
        self.on_outblob: Callable[[Path], None] | None = None  # runs as outblob is read: a racing writer
        self.writes: list[tuple[str, bytes]] = []
        self.entries_made = 0

    def mkdir(self, path: Path) -> None:
        super().mkdir(path)
        self.entries_made += 1
        attributes = {
            "inblob": b"",
            "outblob": b"",
            "auxblob": b"",
            "generation": b"0\n",
            "provider": f"{self.provider}\n".encode(),
            "privlevel": b"",
            "privlevel_floor": f"{self.privlevel_floor}\n".encode(),
        }
        for name, value in attributes.items():
            (path / name).write_bytes(value)

    def write(self, path: Path, data: bytes) -> None:
        if path.name not in self.WRITABLE:
            raise PermissionError(errno.EACCES, "read-only attribute", str(path))
        if path.name == "inblob" and len(data) > 64:
            raise OSError(errno.EINVAL, "inblob larger than 64 bytes", str(path))
        if path.name == "privlevel" and int(data) < self.privlevel_floor:
            raise OSError(errno.EINVAL, "privlevel below privlevel_floor", str(path))
        super().write(path, data)
        self.writes.append((path.name, bytes(data)))
        self.bump_generation(path.parent)

    def bump_generation(self, entry: Path) -> None:
        generation = int((entry / "generation").read_text())
        (entry / "generation").write_text(f"{generation + 1}\n")

    def read(self, path: Path) -> bytes:
        if path.name in self.WRITABLE:
            raise PermissionError(errno.EACCES, "write-only attribute", str(path))
        if path.name == "outblob":
            inblob = (path.parent / "inblob").read_bytes().ljust(64, b"\0")
            evidence = self.signer.get_report(inblob)
            path.write_bytes(evidence.report)
            certs = evidence.certificates if self.with_certs and evidence.certificates else b""
            (path.parent / "auxblob").write_bytes(certs)
            if self.on_outblob is not None:
                self.on_outblob(path.parent)
        return super().read(path)

    def rmdir(self, path: Path) -> None:
        for child in path.iterdir():  # configfs removes the attributes with the entry
            child.unlink()
        super().rmdir(path)

    def racing_writer(self, times: int) -> None:
        """Make another process write ``inblob`` of the entry while the next ``times`` reports are read."""
        remaining = [times]

        def interfere(entry: Path) -> None:
            if remaining[0] > 0:
                remaining[0] -= 1
                TsmFilesystem.write(self, entry / "inblob", b"\x01" * 64)
                self.bump_generation(entry)

        self.on_outblob = interfere


@dataclass
class IoctlCall:
    """What the FAKE driver saw in one SNP_GET_EXT_REPORT call."""

    request: int
    msg_version: int
    user_data: bytes
    vmpl: int
    certs_len: int


@dataclass
class FakeSevGuestDriver:
    """A FAKE of the sev-guest driver's SNP_GET_EXT_REPORT: reads our ctypes structs, writes the answer."""

    signer: SimulatedProvider
    certificates: bytes | None = None  # the host's table; default: the signer's
    status: int = 0  # the firmware's MSG_REPORT_RSP status
    fail: tuple[int, int] | None = None  # (errno, exitinfo2) to fail every call with
    calls: list[IoctlCall] = field(default_factory=list)

    def __call__(self, fd: int, request: int, arg: Any) -> int:
        io = SnpGuestRequestIoctl.from_buffer(arg)  # the kernel writes through the caller's argument
        req = SnpExtReportReq.from_address(io.req_data)
        self.calls.append(
            IoctlCall(request, io.msg_version, bytes(req.data.user_data), req.data.vmpl, req.certs_len)
        )
        if request != SNP_GET_EXT_REPORT or io.msg_version != 1:
            raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
        if self.fail is not None:
            io.exitinfo2 = self.fail[1]
            raise OSError(self.fail[0], os.strerror(self.fail[0]))
        table = self.certificates if self.certificates is not None else self.signer.certificate_table()
        needed = -(-len(table) // PAGE_SIZE) * PAGE_SIZE
        if req.certs_len < needed:
            req.certs_len = needed
            io.exitinfo2 = SNP_GUEST_VMM_ERR_INVALID_LEN << 32
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        report = self.signer.build_report(bytes(req.data.user_data))
        response = struct.pack("<II24x", self.status, len(report)) + report
        ctypes.memmove(io.resp_data, response, len(response))
        ctypes.memmove(req.certs_address, table, len(table))
        io.exitinfo2 = 0
        return 0
