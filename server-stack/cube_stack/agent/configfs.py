"""Reports through the kernel's configfs-tsm interface (Linux >= 6.7, ``CONFIG_TSM_REPORTS``).

The ABI (kernel ``Documentation/ABI/testing/configfs-tsm-report``): ``mkdir`` under
``/sys/kernel/config/tsm/report`` creates a report entry whose attributes the kernel provides:

* ``inblob`` (write): up to 64 bytes of REPORT_DATA;
* ``privlevel`` (write, optional): the VMPL to request, at least ``privlevel_floor`` (read);
* ``outblob`` (read): the report, generated when read; ``auxblob`` (read): the host's certificate table;
* ``provider`` (read): the TSM behind the entry, ``sev_guest`` for SEV-SNP;
* ``generation`` (read): incremented on every write to ``inblob`` or an option. Another process writing to
  the same entry between our write and our read would give us a report for *its* input, so we compare the
  generation after reading with the number of writes we made, and retry with a fresh entry on a mismatch.

Each request uses its own uniquely named entry, removed with ``rmdir`` afterwards. Attributes are opened
without ``O_CREAT`` (configfs does not allow creating files), and each value is written in one ``write``.
All file operations go through :class:`TsmFilesystem`, so the tests can run the provider against a FAKE
configfs tree in a temporary directory that emulates the kernel's side (the real one needs SNP hardware).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
from pathlib import Path

from cube_stack.agent.errors import AgentSettingsError, EvidenceError, ProviderUnavailableError
from cube_stack.agent.evidence import Evidence, check_report, check_report_data, trim_cert_table

log = logging.getLogger(__name__)

DEFAULT_TSM_PATH = Path("/sys/kernel/config/tsm/report")
SEV_PROVIDER = "sev_guest"
_NO_DATA = {errno.ENOENT, errno.ENODATA, errno.ENXIO, errno.EOPNOTSUPP}


class TsmFilesystem:
    """The file operations the provider makes on configfs: plain ``os`` calls."""

    def mkdir(self, path: Path) -> None:
        """Create a report entry."""
        os.mkdir(path, 0o700)

    def rmdir(self, path: Path) -> None:
        """Remove a report entry."""
        os.rmdir(path)

    def write(self, path: Path, data: bytes) -> None:
        """Write ``data`` to an existing attribute in one ``write`` call."""
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            written = os.write(fd, data)
        finally:
            os.close(fd)
        if written != len(data):
            raise OSError(errno.EIO, f"short write to {path.name}: {written} of {len(data)} bytes")

    def read(self, path: Path) -> bytes:
        """Read an attribute to its end."""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            chunks: list[bytes] = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)


class ConfigfsTsmProvider:
    """An :class:`~cube_stack.agent.evidence.AttestationProvider` over configfs-tsm."""

    name = "configfs-tsm"
    simulated = False

    def __init__(
        self,
        base_path: str | os.PathLike[str] = DEFAULT_TSM_PATH,
        *,
        privlevel: int | None = None,
        retries: int = 3,
        fs: TsmFilesystem | None = None,
    ) -> None:
        if privlevel is not None and (not isinstance(privlevel, int) or not 0 <= privlevel <= 3):
            raise AgentSettingsError("privlevel", f"found {privlevel!r}, wanted 0..3 or unset")
        if retries < 1:
            raise AgentSettingsError("retries", f"found {retries!r}, wanted at least 1")
        self.base_path = Path(base_path)
        self.privlevel = privlevel  # unset: the kernel's default (privlevel_floor)
        self.retries = retries
        self._fs = fs or TsmFilesystem()

    def get_report(self, report_data: bytes) -> Evidence:
        """Return a report for ``report_data`` and the host's certificate table (auxblob)."""
        data = check_report_data(report_data)
        for attempt in range(1, self.retries + 1):
            entry = self.base_path / f"cube-{os.getpid()}-{secrets.token_hex(6)}"
            self._make_entry(entry)
            try:
                evidence = self._attempt(entry, data)
            finally:
                self._remove_entry(entry)
            if evidence is not None:
                return evidence
            log.warning(
                "agent.tsm_race attempt=%d: the entry's generation changed while we read it",
                attempt,
                extra={"event": "agent.tsm_race"},
            )
        raise EvidenceError(
            f"configfs-tsm: another writer changed the report entry {self.retries} times in a row",
            code="agent.tsm_race",
        )

    def _make_entry(self, entry: Path) -> None:
        try:
            self._fs.mkdir(entry)
        except FileNotFoundError:
            raise ProviderUnavailableError(
                f"configfs-tsm: {self.base_path} does not exist (kernel >= 6.7 with CONFIG_TSM_REPORTS and "
                "configfs mounted at /sys/kernel/config)",
                code="agent.device_missing",
            ) from None
        except PermissionError:
            raise ProviderUnavailableError(
                f"configfs-tsm: cannot create an entry in {self.base_path} (permission denied; run as root)",
                code="agent.device_permission",
            ) from None
        except OSError as exc:
            raise EvidenceError(f"configfs-tsm: mkdir in {self.base_path} failed ({_errno(exc)})") from None

    def _remove_entry(self, entry: Path) -> None:
        try:
            self._fs.rmdir(entry)
        except OSError as exc:  # a leftover entry costs kernel memory only; never hide the real outcome
            log.warning(
                "agent.tsm_rmdir_failed entry=%s error=%s",
                entry.name,
                _errno(exc),
                extra={"event": "agent.tsm"},
            )

    def _attempt(self, entry: Path, data: bytes) -> Evidence | None:
        """Write the request, read the answer; return None when the generation shows a race."""
        try:
            provider = self._read_text(entry / "provider")
            if provider is not None and provider != SEV_PROVIDER:
                raise ProviderUnavailableError(
                    f"configfs-tsm: provider {provider!r} found, wanted {SEV_PROVIDER!r} "
                    "(not an SEV-SNP guest)",
                    code="agent.tsm_wrong_provider",
                )
            start = self._generation(entry)
            writes = 0
            if self.privlevel is not None:
                self._fs.write(entry / "privlevel", f"{self.privlevel}\n".encode())
                writes += 1
            self._fs.write(entry / "inblob", data)
            writes += 1
            report = self._fs.read(entry / "outblob")
            certs = self._read_optional(entry / "auxblob")
            end = self._generation(entry)
        except OSError as exc:
            raise EvidenceError(f"configfs-tsm: {entry.name}: {_errno(exc)}") from None
        if end != start + writes:
            return None
        return Evidence(
            report=check_report(report, data, "configfs-tsm outblob"),
            certificates=trim_cert_table(certs) if certs else None,
        )

    def _generation(self, entry: Path) -> int:
        text = self._fs.read(entry / "generation").decode("ascii", errors="replace").strip()
        try:
            return int(text)
        except ValueError:
            raise EvidenceError(
                f"configfs-tsm: generation {text!r} found, wanted a decimal number",
                code="agent.report_malformed",
            ) from None

    def _read_optional(self, path: Path) -> bytes | None:
        try:
            return self._fs.read(path)
        except OSError as exc:
            if exc.errno in _NO_DATA:
                return None  # no certificates from the host (or an older kernel without auxblob)
            raise

    def _read_text(self, path: Path) -> str | None:
        raw = self._read_optional(path)
        return None if raw is None else raw.decode("ascii", errors="replace").strip()


def _errno(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return f"{name}: {exc.strerror}" if exc.strerror else name
