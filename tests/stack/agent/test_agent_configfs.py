"""configfs-tsm against a FAKE configfs tree: entry life cycle, generation races, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from cube_agent_testkit import FakeConfigfsTsm, MakeProvider, verify_evidence

from cube_lsp.attestation import check_binding, expected_report_data
from cube_stack.agent import (
    ConfigfsTsmProvider,
    EvidenceError,
    ProviderUnavailableError,
    TsmFilesystem,
)

NONCE = bytes(range(100, 132))
SPKI = b"configfs test spki"


@pytest.fixture
def fake(tmp_path: Path, make_simulated: MakeProvider) -> FakeConfigfsTsm:
    return FakeConfigfsTsm(tmp_path, make_simulated())


def test_round_trip_verifies_and_leaves_no_entry(fake: FakeConfigfsTsm) -> None:
    provider = ConfigfsTsmProvider(fake.base, fs=fake)
    evidence = provider.get_report(expected_report_data(NONCE, SPKI))
    verified = verify_evidence(evidence.report, evidence.certificates, fake.signer)
    check_binding(verified, NONCE, SPKI)
    assert evidence.certificates == fake.signer.certificate_table()
    assert fake.writes == [("inblob", expected_report_data(NONCE, SPKI))]
    assert list(fake.base.iterdir()) == []  # the entry was removed
    assert provider.name == "configfs-tsm" and not provider.simulated


def test_privlevel_is_written_before_inblob_when_asked(fake: FakeConfigfsTsm) -> None:
    provider = ConfigfsTsmProvider(fake.base, privlevel=2, fs=fake)
    provider.get_report(bytes(64))
    assert [name for name, _ in fake.writes] == ["privlevel", "inblob"]
    assert fake.writes[0][1] == b"2\n"


def test_a_privlevel_below_the_floor_is_an_evidence_error(
    tmp_path: Path, make_simulated: MakeProvider
) -> None:
    fake = FakeConfigfsTsm(tmp_path, make_simulated(), privlevel_floor=2)
    with pytest.raises(EvidenceError) as caught:
        ConfigfsTsmProvider(fake.base, privlevel=0, fs=fake).get_report(bytes(64))
    assert caught.value.code == "agent.evidence_failed"
    assert list(fake.base.iterdir()) == []


def test_no_certificates_from_the_host_gives_none(tmp_path: Path, make_simulated: MakeProvider) -> None:
    fake = FakeConfigfsTsm(tmp_path, make_simulated(), with_certs=False)
    evidence = ConfigfsTsmProvider(fake.base, fs=fake).get_report(bytes(64))
    assert evidence.certificates is None and len(evidence.report) == 0x4A0


def test_one_race_is_retried_with_a_fresh_entry(fake: FakeConfigfsTsm) -> None:
    fake.racing_writer(times=1)
    data = expected_report_data(NONCE, SPKI)
    evidence = ConfigfsTsmProvider(fake.base, fs=fake).get_report(data)
    assert fake.entries_made == 2
    assert evidence.report[0x50:0x90] == data  # the report for OUR inblob, not the racer's
    assert list(fake.base.iterdir()) == []


def test_a_race_on_every_attempt_is_an_error(fake: FakeConfigfsTsm) -> None:
    fake.racing_writer(times=10)
    with pytest.raises(EvidenceError) as caught:
        ConfigfsTsmProvider(fake.base, retries=3, fs=fake).get_report(bytes(64))
    assert caught.value.code == "agent.tsm_race"
    assert fake.entries_made == 3
    assert list(fake.base.iterdir()) == []


def test_a_missing_configfs_path_is_a_clear_error(tmp_path: Path) -> None:
    provider = ConfigfsTsmProvider(tmp_path / "sys" / "kernel" / "config" / "tsm" / "report")
    with pytest.raises(ProviderUnavailableError) as caught:
        provider.get_report(bytes(64))
    assert caught.value.code == "agent.device_missing"
    assert "tsm/report" in caught.value.message


def test_a_tsm_that_is_not_sev_guest_is_refused(tmp_path: Path, make_simulated: MakeProvider) -> None:
    fake = FakeConfigfsTsm(tmp_path, make_simulated(), provider="tdx_guest")
    with pytest.raises(ProviderUnavailableError) as caught:
        ConfigfsTsmProvider(fake.base, fs=fake).get_report(bytes(64))
    assert caught.value.code == "agent.tsm_wrong_provider"
    assert list(fake.base.iterdir()) == []


def test_a_short_outblob_is_malformed(tmp_path: Path, make_simulated: MakeProvider) -> None:
    class Truncating(FakeConfigfsTsm):
        def read(self, path: Path) -> bytes:
            data = super().read(path)
            return data[:100] if path.name == "outblob" else data

    fake = Truncating(tmp_path, make_simulated())
    with pytest.raises(EvidenceError) as caught:
        ConfigfsTsmProvider(fake.base, fs=fake).get_report(bytes(64))
    assert caught.value.code == "agent.report_malformed"


def test_the_plain_filesystem_writes_existing_attributes_only(tmp_path: Path) -> None:
    fs = TsmFilesystem()
    entry = tmp_path / "entry"
    fs.mkdir(entry)
    (entry / "inblob").write_bytes(b"")
    fs.write(entry / "inblob", b"abc")
    assert fs.read(entry / "inblob") == b"abc"
    with pytest.raises(FileNotFoundError):
        fs.write(entry / "not-an-attribute", b"x")  # configfs cannot create files: neither do we
    (entry / "inblob").unlink()
    fs.rmdir(entry)
    assert not entry.exists()


@pytest.mark.parametrize("bad", [{"privlevel": 4}, {"privlevel": -1}, {"retries": 0}])
def test_options_are_validated(bad: dict[str, int]) -> None:
    with pytest.raises(Exception) as caught:
        ConfigfsTsmProvider(Path("/nonexistent"), **bad)  # type: ignore[arg-type]
    assert getattr(caught.value, "code", None) == "agent.settings_invalid"
