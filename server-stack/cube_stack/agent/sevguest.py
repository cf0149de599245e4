"""Reports from ``/dev/sev-guest`` through the SNP_GET_EXT_REPORT ioctl (Linux sev-guest driver, >= 5.19).

The structures follow the kernel's ``include/uapi/linux/sev-guest.h`` on x86-64 (natural alignment, which
``ctypes`` reproduces; SEV-SNP guests are x86-64 only)::

    struct snp_report_req          { u8 user_data[64]; u32 vmpl; u8 rsvd[28]; }           96 bytes
    struct snp_ext_report_req      { struct snp_report_req data; u64 certs_address;
                                     u32 certs_len; }                                     112 bytes
    struct snp_report_resp         { u8 data[4000]; }    firmware MSG_REPORT_RSP inside:
                                     u32 status; u32 report_size; u8 reserved[24]; u8 report[1184]
    struct snp_guest_request_ioctl { u8 msg_version; u64 req_data; u64 resp_data;
                                     u64 exitinfo2 (= u32 fw_error | u32 vmm_error << 32); }   32 bytes
    SNP_GET_EXT_REPORT = _IOWR('S', 0x2, struct snp_guest_request_ioctl) = 0xC0205302

The kernel reads the request through ``req_data``, writes the response through ``resp_data`` and the host's
certificate table into ``certs_address`` (``certs_len`` must be a multiple of the page size, at most
16 KiB). When the buffer is too small it fails with ``vmm_error`` SNP_GUEST_VMM_ERR_INVALID_LEN (1) and
writes the size it needs back into ``certs_len``: we retry once more with that size. The ioctl blocks (it
waits for the PSP), so the agent calls :meth:`SevGuestProvider.get_report` from a worker thread. The
``ioctl`` callable is injectable: the tests emulate the kernel's side through the same ctypes structures,
since the real device needs SNP hardware.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cube_stack.agent.errors import AgentSettingsError, EvidenceError, ProviderUnavailableError
from cube_stack.agent.evidence import Evidence, check_report, check_report_data, trim_cert_table

log = logging.getLogger(__name__)

DEFAULT_DEVICE = Path("/dev/sev-guest")
PAGE_SIZE = 4096
MAX_CERTS_LEN = 0x4000  # SEV_FW_BLOB_MAX_SIZE: the kernel refuses larger certificate buffers
MSG_VERSION = 1
SNP_GUEST_VMM_ERR_INVALID_LEN = 1
SNP_GUEST_VMM_ERR_BUSY = 2
_RESP_HEADER = struct.Struct("<II24x")  # status, report_size, reserved


class SnpReportReq(ctypes.Structure):
    """``struct snp_report_req``: REPORT_DATA and the VMPL the report is requested for."""

    _fields_ = (("user_data", ctypes.c_uint8 * 64), ("vmpl", ctypes.c_uint32), ("rsvd", ctypes.c_uint8 * 28))


class SnpExtReportReq(ctypes.Structure):
    """``struct snp_ext_report_req``: a report request plus the buffer for the certificate table."""

    _fields_ = (("data", SnpReportReq), ("certs_address", ctypes.c_uint64), ("certs_len", ctypes.c_uint32))


class SnpReportResp(ctypes.Structure):
    """``struct snp_report_resp``: the firmware's MSG_REPORT_RSP, padded to 4000 bytes."""

    _fields_ = (("data", ctypes.c_uint8 * 4000),)


class SnpGuestRequestIoctl(ctypes.Structure):
    """``struct snp_guest_request_ioctl``: the ioctl argument; ``exitinfo2`` carries the error codes."""

    _fields_ = (
        ("msg_version", ctypes.c_uint8),
        ("req_data", ctypes.c_uint64),
        ("resp_data", ctypes.c_uint64),
        ("exitinfo2", ctypes.c_uint64),
    )

    @property
    def fw_error(self) -> int:
        """Return the firmware error (low 32 bits of exitinfo2)."""
        return int(self.exitinfo2) & 0xFFFFFFFF

    @property
    def vmm_error(self) -> int:
        """Return the hypervisor error (high 32 bits of exitinfo2)."""
        return int(self.exitinfo2) >> 32


def _iowr(kind: str, number: int, size: int) -> int:
    """Return the Linux ``_IOWR(kind, number, size)`` request code (x86: dir bits 3 = read|write)."""
    return 3 << 30 | size << 16 | ord(kind) << 8 | number


SNP_GET_EXT_REPORT = _iowr("S", 0x2, ctypes.sizeof(SnpGuestRequestIoctl))

IoctlFunc = Callable[[int, int, Any], Any]
"""``fcntl.ioctl``'s shape: (fd, request, mutable argument buffer)."""


def parse_report_response(raw: bytes) -> tuple[int, bytes]:
    """Return (status, report bytes) from a ``snp_report_resp`` buffer."""
    status, size = _RESP_HEADER.unpack_from(raw)
    start = _RESP_HEADER.size
    if size > len(raw) - start:
        raise EvidenceError(
            f"/dev/sev-guest: response report_size {size} found, wanted at most {len(raw) - start}",
            code="agent.report_malformed",
        )
    return status, bytes(raw[start : start + size])


class SevGuestProvider:
    """An :class:`~cube_stack.agent.evidence.AttestationProvider` over ``/dev/sev-guest``."""

    name = "sev-guest"
    simulated = False

    def __init__(
        self,
        device: str | os.PathLike[str] = DEFAULT_DEVICE,
        *,
        vmpl: int = 0,
        certs_len: int = 2 * PAGE_SIZE,
        ioctl: IoctlFunc | None = None,
    ) -> None:
        if not isinstance(vmpl, int) or not 0 <= vmpl <= 3:
            raise AgentSettingsError("vmpl", f"found {vmpl!r}, wanted 0..3")
        if certs_len <= 0 or certs_len % PAGE_SIZE or certs_len > MAX_CERTS_LEN:
            raise AgentSettingsError(
                "certs_len", f"found {certs_len}, wanted a multiple of {PAGE_SIZE} up to {MAX_CERTS_LEN}"
            )
        self.device = Path(device)
        self.vmpl = vmpl
        self.certs_len = certs_len
        self._ioctl: IoctlFunc = ioctl or fcntl.ioctl

    def _open(self) -> int:
        try:
            return os.open(self.device, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise ProviderUnavailableError(
                f"sev-guest: {self.device} does not exist (not an SEV-SNP guest, or the sev-guest driver is "
                "not loaded)",
                code="agent.device_missing",
            ) from None
        except PermissionError:
            raise ProviderUnavailableError(
                f"sev-guest: {self.device} cannot be opened read-write (permission denied; run as root)",
                code="agent.device_permission",
            ) from None
        except OSError as exc:
            raise ProviderUnavailableError(
                f"sev-guest: {self.device} cannot be opened "
                f"({errno.errorcode.get(exc.errno or 0, exc.errno)})",
                code="agent.device_missing",
            ) from None

    def get_report(self, report_data: bytes) -> Evidence:
        """Return a report for ``report_data`` and the host's certificate table (blocks on the PSP)."""
        data = check_report_data(report_data)
        fd = self._open()
        try:
            certs_len = self.certs_len
            for _ in range(3):
                outcome = self._request(fd, data, certs_len)
                if isinstance(outcome, Evidence):
                    return outcome
                certs_len = outcome  # the buffer was too small; the kernel told us the size it needs
            raise EvidenceError(
                "sev-guest: the host kept asking for a larger certificate buffer",
                code="agent.certs_too_large",
            )
        finally:
            os.close(fd)

    def _request(self, fd: int, data: bytes, certs_len: int) -> Evidence | int:
        """Make one SNP_GET_EXT_REPORT call; return the evidence, or the certificate size the kernel wants."""
        certs = ctypes.create_string_buffer(certs_len)
        req = SnpExtReportReq()
        ctypes.memmove(req.data.user_data, data, len(data))
        req.data.vmpl = self.vmpl
        req.certs_address = ctypes.addressof(certs)
        req.certs_len = certs_len
        resp = SnpReportResp()
        arg = SnpGuestRequestIoctl(
            msg_version=MSG_VERSION, req_data=ctypes.addressof(req), resp_data=ctypes.addressof(resp)
        )
        try:
            self._ioctl(fd, SNP_GET_EXT_REPORT, arg)
        except OSError as exc:
            # The kernel writes the size it needs into our request even if exitinfo2 is not copied back.
            if arg.vmm_error == SNP_GUEST_VMM_ERR_INVALID_LEN or req.certs_len > certs_len:
                needed = int(req.certs_len)
                if needed <= certs_len or needed > MAX_CERTS_LEN:
                    raise EvidenceError(
                        f"sev-guest: the host's certificate table needs {needed} bytes, "
                        f"wanted more than {certs_len} and at most {MAX_CERTS_LEN}",
                        code="agent.certs_too_large",
                    ) from None
                log.info(
                    "agent.sev_guest_certs_retry size=%d",
                    needed,
                    extra={"event": "agent.sev_guest_certs_retry"},
                )
                return needed
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            raise EvidenceError(
                f"sev-guest: SNP_GET_EXT_REPORT failed ({name}; firmware error 0x{arg.fw_error:x}, "
                f"VMM error 0x{arg.vmm_error:x})",
                code="agent.sev_guest_failed",
            ) from None
        status, report = parse_report_response(bytes(resp))
        if status != 0:
            raise EvidenceError(
                f"sev-guest: the firmware answered status 0x{status:x}, wanted 0 (success)",
                code="agent.sev_guest_failed",
            )
        return Evidence(
            report=check_report(report, data, "sev-guest"), certificates=trim_cert_table(certs.raw)
        )
