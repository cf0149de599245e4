"""/dev/sev-guest: the uapi struct layouts, the ioctl through a FAKE driver, and the error paths."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from pathlib import Path

import pytest
from cube_agent_testkit import FakeSevGuestDriver, MakeProvider, verify_evidence

from cube_lsp.attestation import check_binding, expected_report_data
from cube_stack.agent import (
    AgentSettingsError,
    EvidenceError,
    ProviderUnavailableError,
    SevGuestProvider,
)
from cube_stack.agent.sevguest import (
    SNP_GET_EXT_REPORT,
    SnpExtReportReq,
    SnpGuestRequestIoctl,
    SnpReportReq,
    SnpReportResp,
    parse_report_response,
)

NONCE = bytes(range(50, 82))
SPKI = b"sev-guest test spki"


def test_struct_sizes_and_offsets_match_the_kernel_uapi() -> None:
    assert ctypes.sizeof(SnpReportReq) == 96
    assert (SnpReportReq.user_data.offset, SnpReportReq.vmpl.offset, SnpReportReq.rsvd.offset) == (0, 64, 68)
    assert ctypes.sizeof(SnpExtReportReq) == 112  # 108 bytes of fields, padded to u64 alignment
    assert (SnpExtReportReq.certs_address.offset, SnpExtReportReq.certs_len.offset) == (96, 104)
    assert ctypes.sizeof(SnpReportResp) == 4000
    assert ctypes.sizeof(SnpGuestRequestIoctl) == 32
    offsets = [
        getattr(SnpGuestRequestIoctl, f).offset for f in ("msg_version", "req_data", "resp_data", "exitinfo2")
    ]
    assert offsets == [0, 8, 16, 24]
    assert SNP_GET_EXT_REPORT == 0xC0205302  # _IOWR('S', 0x2, struct snp_guest_request_ioctl)


def test_a_request_packs_byte_for_byte_like_the_c_struct() -> None:
    req = SnpExtReportReq()
    ctypes.memmove(req.data.user_data, bytes(range(64)), 64)
    req.data.vmpl = 2
    req.certs_address = 0x1122334455667788
    req.certs_len = 0x2000
    wanted = bytes(range(64)) + struct.pack("<I28xQI4x", 2, 0x1122334455667788, 0x2000)
    assert bytes(req) == wanted
    arg = SnpGuestRequestIoctl(msg_version=1, req_data=0xAA, resp_data=0xBB, exitinfo2=(7 << 32) | 5)
    assert bytes(arg) == struct.pack("<B7xQQQ", 1, 0xAA, 0xBB, (7 << 32) | 5)
    assert (arg.fw_error, arg.vmm_error) == (5, 7)


def test_the_response_header_is_status_size_and_24_reserved_bytes() -> None:
    raw = struct.pack("<II24x", 0, 4) + b"abcd" + bytes(100)
    assert parse_report_response(raw) == (0, b"abcd")
    with pytest.raises(EvidenceError) as caught:
        parse_report_response(struct.pack("<II24x", 0, 5000) + bytes(10))
    assert caught.value.code == "agent.report_malformed"


@pytest.fixture
def device(tmp_path: Path) -> Path:
    path = tmp_path / "sev-guest"  # opened read-write only; the FAKE driver answers the ioctl
    path.write_bytes(b"")
    return path


def test_round_trip_through_the_fake_driver_verifies(device: Path, make_simulated: MakeProvider) -> None:
    signer = make_simulated()
    driver = FakeSevGuestDriver(signer)
    data = expected_report_data(NONCE, SPKI)
    evidence = SevGuestProvider(device, vmpl=1, ioctl=driver).get_report(data)
    check_binding(verify_evidence(evidence.report, evidence.certificates, signer), NONCE, SPKI)
    assert evidence.certificates == signer.certificate_table()  # trimmed of the buffer's padding
    [call] = driver.calls
    assert (call.request, call.msg_version, call.user_data, call.vmpl) == (SNP_GET_EXT_REPORT, 1, data, 1)
    assert call.certs_len == 2 * 4096


def test_a_too_small_certificate_buffer_is_retried_with_the_size_the_kernel_wants(
    device: Path, make_simulated: MakeProvider
) -> None:
    signer = make_simulated()
    big_table = signer.certificate_table() + bytes(9000)  # the host sends 3 pages of table
    driver = FakeSevGuestDriver(signer, certificates=big_table)
    evidence = SevGuestProvider(device, certs_len=4096, ioctl=driver).get_report(bytes(64))
    assert [c.certs_len for c in driver.calls] == [4096, 3 * 4096]
    assert evidence.certificates == signer.certificate_table()


def test_a_table_larger_than_the_kernel_allows_is_an_error(
    device: Path, make_simulated: MakeProvider
) -> None:
    signer = make_simulated()
    driver = FakeSevGuestDriver(signer, certificates=signer.certificate_table() + bytes(20000))
    with pytest.raises(EvidenceError) as caught:
        SevGuestProvider(device, ioctl=driver).get_report(bytes(64))
    assert caught.value.code == "agent.certs_too_large"


def test_no_certificates_from_the_host_gives_none(device: Path, make_simulated: MakeProvider) -> None:
    driver = FakeSevGuestDriver(make_simulated(), certificates=b"")
    evidence = SevGuestProvider(device, ioctl=driver).get_report(bytes(64))
    assert evidence.certificates is None


@pytest.mark.parametrize(
    ("fail", "status"),
    [((errno.EIO, 0x16), 0), ((errno.EINVAL, 0), 0), (None, 0x16)],
    ids=["firmware-error", "einval", "bad-status"],
)
def test_driver_and_firmware_errors_are_evidence_errors(
    device: Path, make_simulated: MakeProvider, fail: tuple[int, int] | None, status: int
) -> None:
    driver = FakeSevGuestDriver(make_simulated(), fail=fail, status=status)
    with pytest.raises(EvidenceError) as caught:
        SevGuestProvider(device, ioctl=driver).get_report(bytes(64))
    assert caught.value.code == "agent.sev_guest_failed"
    if fail is not None and fail[1]:
        assert "firmware error 0x16" in caught.value.message


def test_a_report_for_other_data_is_refused(device: Path, make_simulated: MakeProvider) -> None:
    class Confused(FakeSevGuestDriver):
        def __call__(self, fd: int, request: int, arg: object) -> int:
            io = SnpGuestRequestIoctl.from_buffer(arg)  # type: ignore[arg-type]
            SnpExtReportReq.from_address(io.req_data).data.user_data[0] ^= 0xFF
            return super().__call__(fd, request, arg)

    with pytest.raises(EvidenceError) as caught:
        SevGuestProvider(device, ioctl=Confused(make_simulated())).get_report(bytes(64))
    assert caught.value.code == "agent.report_data_mismatch"


def test_a_missing_device_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailableError) as caught:
        SevGuestProvider(tmp_path / "no-sev-guest").get_report(bytes(64))
    assert caught.value.code == "agent.device_missing"
    assert "no-sev-guest" in caught.value.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root opens any file regardless of its mode")
def test_an_unopenable_device_says_permission(device: Path) -> None:
    device.chmod(0o000)
    with pytest.raises(ProviderUnavailableError) as caught:
        SevGuestProvider(device).get_report(bytes(64))
    assert caught.value.code == "agent.device_permission"


def test_the_real_ioctl_on_a_device_without_the_driver_fails_cleanly() -> None:
    # /dev/null accepts the open but has no ioctls: fcntl.ioctl really runs with our structs and fails.
    with pytest.raises(EvidenceError) as caught:
        SevGuestProvider("/dev/null").get_report(bytes(64))
    assert caught.value.code == "agent.sev_guest_failed"
    assert "ENOTTY" in caught.value.message


@pytest.mark.parametrize("bad", [{"vmpl": 4}, {"certs_len": 1000}, {"certs_len": 5 * 4096}, {"certs_len": 0}])
def test_options_are_validated(bad: dict[str, int]) -> None:
    with pytest.raises(AgentSettingsError):
        SevGuestProvider("/dev/sev-guest", **bad)  # type: ignore[arg-type]
