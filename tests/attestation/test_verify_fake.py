"""verify.py with a chain made at test time: simulated roots, expiry, CRLs, TCB/hwID binding, KDS, cache."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from cube_lsp.attestation import (
    AttestationError,
    CertTable,
    Product,
    SigningKey,
    TrustedRoot,
    VerifiedReport,
    VerifyOptions,
    crl_url,
    fingerprint,
    parse_cert_table,
    parse_report,
    vcek_url,
    verify_report,
)
from tests.attestation import fakes
from tests.attestation.fakes import T0, Tcb, make_chain, make_crl, make_report

NOW = T0 + timedelta(days=10)


def _code(fn, *args, **kw) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(AttestationError) as err:
        fn(*args, **kw)
    return err.value.code


def sim_options(chain: fakes.FakeChain, **kw) -> VerifyOptions:  # type: ignore[no-untyped-def]
    kw.setdefault("now", lambda: NOW)
    return VerifyOptions(extra_roots=(TrustedRoot.from_pem(chain.pem("ark")),), **kw)


def shipped(chain: fakes.FakeChain, *, ark: bool = False) -> CertTable:
    leaf = chain.der("leaf")
    return CertTable(
        vcek=leaf if chain.kind == "VCEK" else None,
        vlek=leaf if chain.kind == "VLEK" else None,
        ask=chain.der("ask"),
        ark=chain.der("ark") if ark else None,
    )


@pytest.mark.parametrize("product", list(Product))
@pytest.mark.parametrize("kind", ["VCEK", "VLEK"])
def test_simulated_root_uses_the_same_path_and_is_marked(product: Product, kind: str) -> None:
    chain = make_chain(product, kind=kind)
    verified = verify_report(make_report(chain), shipped(chain), sim_options(chain))
    assert verified.simulated and verified.root == f"simulated:{fingerprint(chain.ark)}"
    assert verified.product is product
    assert verified.signer is (SigningKey.VLEK if kind == "VLEK" else SigningKey.VCEK)


def test_simulated_root_by_fingerprint_needs_the_ark_in_the_table() -> None:
    chain = make_chain(label="by-fp", amd_names=False)
    opts = VerifyOptions(now=lambda: NOW, extra_roots=(TrustedRoot.from_fingerprint(fingerprint(chain.ark)),))
    verified = verify_report(make_report(chain), shipped(chain, ark=True), opts)
    assert verified.root == f"simulated:{fingerprint(chain.ark)}"
    assert _code(verify_report, make_report(chain), shipped(chain), opts) == "attestation.root_untrusted"


def test_bad_fingerprint_is_refused() -> None:
    with pytest.raises(AttestationError) as err:
        TrustedRoot.from_fingerprint("abc")
    assert err.value.code == "attestation.root_untrusted"


def test_unconfigured_simulated_root_is_untrusted() -> None:
    chain = make_chain(label="rogue", amd_names=False)
    opts = VerifyOptions(now=lambda: NOW)
    assert (
        _code(verify_report, make_report(chain), shipped(chain, ark=True), opts)
        == "attestation.root_untrusted"
    )
    assert _code(verify_report, make_report(chain), shipped(chain), opts) == "attestation.root_untrusted"


def test_a_simulated_chain_named_like_amds_does_not_pass_for_amd() -> None:
    chain = make_chain(label="impostor")  # AMD's names, its own keys
    opts = VerifyOptions(now=lambda: NOW)
    assert _code(verify_report, make_report(chain), shipped(chain), opts) == "attestation.chain_invalid"
    assert (
        _code(verify_report, make_report(chain), shipped(chain, ark=True), opts)
        == "attestation.root_untrusted"
    )


def test_another_simulated_root_does_not_vouch_for_this_chain() -> None:
    chain, other = make_chain(label="one", amd_names=False), make_chain(label="two", amd_names=False)
    opts = sim_options(other)
    code = _code(verify_report, make_report(chain), shipped(chain), opts)
    assert code in {"attestation.chain_invalid", "attestation.root_untrusted"}


@pytest.mark.parametrize(
    ("delta", "code"),
    [
        (timedelta(days=366), "attestation.cert_expired"),
        (timedelta(days=-1), "attestation.cert_not_yet_valid"),
    ],
)
def test_validity_at_the_injected_time(delta: timedelta, code: str) -> None:
    chain = make_chain()
    opts = sim_options(chain, now=lambda: T0 + delta)
    assert _code(verify_report, make_report(chain), shipped(chain), opts) == code


def test_unsigned_reports_are_bad_signature() -> None:
    chain = make_chain()
    for raw in (make_report(chain, signing_key=7), make_report(chain, sign=False)):
        assert _code(verify_report, raw, shipped(chain), sim_options(chain)) == "attestation.bad_signature"
    masked = bytearray(make_report(chain))
    masked[0x48] |= 2  # MASK_CHIP_KEY
    assert (
        _code(verify_report, bytes(masked), shipped(chain), sim_options(chain)) == "attestation.bad_signature"
    )


@pytest.mark.parametrize("product", list(Product))
@pytest.mark.parametrize("component", ["bootloader", "tee", "snp", "microcode", "fmc"])
def test_reported_tcb_must_equal_the_certificate(product: Product, component: str) -> None:
    chain = make_chain(product)
    tcb = replace(chain.tcb, **{component: getattr(chain.tcb, component) + 1})
    raw = make_report(chain, reported_tcb=tcb)
    if component == "fmc" and product is not Product.TURIN:
        verify_report(raw, shipped(chain), sim_options(chain))  # no FMC before Turin: not encoded at all
        return
    assert _code(verify_report, raw, shipped(chain), sim_options(chain)) == "attestation.tcb_mismatch"


@pytest.mark.parametrize("product", list(Product))
def test_chip_id_must_equal_hwid(product: Product) -> None:
    chain = make_chain(product, hwid=b"\xee" * (8 if product is Product.TURIN else 64), label=f"hw-{product}")
    assert _code(verify_report, make_report(chain), shipped(chain), sim_options(chain)) == (
        "attestation.chip_id_mismatch"
    )


def test_masked_chip_id_is_only_for_vleks() -> None:
    chain = make_chain()
    raw = make_report(chain, chip_id=bytes(64))
    assert _code(verify_report, raw, shipped(chain), sim_options(chain)) == "attestation.chip_id_mismatch"
    vlek = make_chain(kind="VLEK")
    verify_report(make_report(vlek, chip_id=bytes(64)), shipped(vlek), sim_options(vlek))


def test_hwid_in_der_wrapped_form_is_accepted() -> None:
    chain = make_chain(hwid=b"\x04\x40" + fakes.MILAN_CHIP, label="wrapped")
    verify_report(make_report(chain), shipped(chain), sim_options(chain))


def test_v2_report_picks_the_product_whose_chain_holds() -> None:
    chain = make_chain(Product.GENOA, label="genoa-v2")
    verified = verify_report(make_report(chain, version=2), shipped(chain), sim_options(chain))
    assert verified.product is Product.GENOA and verified.report.product is None


# ------------------------------------------------------------------------------------------------ CRL


def test_crl_revokes_the_leaf_or_the_ask() -> None:
    chain = make_chain(label="crl")
    raw = make_report(chain)
    clean = sim_options(chain, check_revocations=True, crl=make_crl(chain))
    verify_report(raw, shipped(chain), clean)
    for serial in (fakes.make_chain(label="crl").leaf.serial_number, 0x10001):
        opts = sim_options(chain, check_revocations=True, crl=make_crl(chain, (serial,)))
        assert _code(verify_report, raw, shipped(chain), opts) == "attestation.cert_revoked"


def test_crl_must_be_signed_by_the_ark_and_fresh() -> None:
    chain = make_chain(label="crl")
    raw = make_report(chain)
    forged = make_crl(chain, signer=chain.ask_key)
    opts = sim_options(chain, check_revocations=True, crl=forged)
    assert _code(verify_report, raw, shipped(chain), opts) == "attestation.crl_invalid"
    stale = make_crl(chain, this_update=T0 - timedelta(days=60))
    opts = sim_options(chain, check_revocations=True, crl=stale)
    assert _code(verify_report, raw, shipped(chain), opts) == "attestation.crl_invalid"
    opts = sim_options(chain, check_revocations=True, crl=b"not a crl")
    assert _code(verify_report, raw, shipped(chain), opts) == "attestation.crl_invalid"


def test_crl_unavailable_fails_closed() -> None:
    chain = make_chain(label="crl")
    opts = sim_options(chain, check_revocations=True)
    assert _code(verify_report, make_report(chain), shipped(chain), opts) == "attestation.crl_unavailable"


def test_crl_fetched_through_the_getter_and_cached(tmp_path: Path) -> None:
    chain = make_chain(label="crl")
    raw = make_report(chain)
    calls: list[str] = []

    def getter(url: str) -> bytes:
        calls.append(url)
        return make_crl(chain)

    opts = sim_options(chain, check_revocations=True, getter=getter, cache_dir=tmp_path)
    verify_report(raw, shipped(chain), opts)
    assert calls == [crl_url(Product.MILAN, SigningKey.VCEK)] == ["https://kdsintf.amd.com/vcek/v1/Milan/crl"]
    offline = sim_options(chain, check_revocations=True, cache_dir=tmp_path, offline=True)
    verify_report(raw, shipped(chain), offline)
    assert len(calls) == 1


# ------------------------------------------------------------------------------------------------ KDS


class FakeKds:
    """A getter serving certificates by URL, recording each call (go-sev-guest's fakekds, in miniature)."""

    def __init__(self, pages: dict[str, bytes]) -> None:
        self.pages = pages
        self.calls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if url not in self.pages:
            raise LookupError(f"404 {url}")
        return self.pages[url]


def test_kds_urls() -> None:
    milan = parse_report(make_report(make_chain()))
    assert vcek_url(milan, Product.MILAN) == (
        f"https://kdsintf.amd.com/vcek/v1/Milan/{fakes.MILAN_CHIP.hex()}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"
    )
    turin = parse_report(make_report(make_chain(Product.TURIN, tcb=Tcb(1, 0, 2, 71, 0))))
    assert vcek_url(turin, Product.TURIN) == (
        "https://kdsintf.amd.com/vcek/v1/Turin/0102030405060708?fmcSPL=0&blSPL=1&teeSPL=0&snpSPL=2&ucodeSPL=71"
    )


@pytest.mark.parametrize("product", list(Product))
def test_vcek_fetched_from_kds_cached_then_used_offline(product: Product, tmp_path: Path) -> None:
    chain = make_chain(product)
    raw = make_report(chain)
    url = vcek_url(parse_report(raw), product)
    kds = FakeKds({url: chain.der("leaf")})
    intermediates = CertTable(ask=chain.der("ask"))
    verify_report(raw, intermediates, sim_options(chain, getter=kds, cache_dir=tmp_path))
    assert kds.calls == [url]
    assert len(list(tmp_path.glob("vcek-*.der"))) == 1
    verify_report(raw, intermediates, sim_options(chain, getter=kds, cache_dir=tmp_path))
    assert kds.calls == [url]  # served from the cache
    verify_report(raw, intermediates, sim_options(chain, cache_dir=tmp_path, offline=True))


def test_offline_without_cache_and_failing_getters_are_vcek_unavailable(tmp_path: Path) -> None:
    chain = make_chain()
    raw = make_report(chain)
    certs = CertTable(ask=chain.der("ask"))
    for opts in (
        sim_options(chain, cache_dir=tmp_path, offline=True),
        sim_options(chain, getter=FakeKds({}), cache_dir=tmp_path),
        sim_options(chain, getter=lambda url: b"", cache_dir=tmp_path),
        sim_options(chain, getter=FakeKds({}), offline=True),
    ):
        assert _code(verify_report, raw, certs, opts) == "attestation.vcek_unavailable"
    assert not list(tmp_path.iterdir())


def test_garbage_from_kds_is_refused_and_not_cached(tmp_path: Path) -> None:
    chain = make_chain()
    raw = make_report(chain)
    url = vcek_url(parse_report(raw), Product.MILAN)
    opts = sim_options(chain, getter=FakeKds({url: b"<html>busy</html>"}), cache_dir=tmp_path)
    assert _code(verify_report, raw, CertTable(ask=chain.der("ask")), opts) == "attestation.cert_malformed"
    wrong = make_chain(label="wrong-leaf", amd_names=True)
    opts = sim_options(chain, getter=FakeKds({url: wrong.der("leaf")}), cache_dir=tmp_path)
    assert _code(verify_report, raw, CertTable(ask=chain.der("ask")), opts) == "attestation.chain_invalid"
    assert not list(tmp_path.glob("vcek-*"))


def test_masked_chip_id_cannot_be_looked_up() -> None:
    chain = make_chain()
    opts = sim_options(chain, getter=FakeKds({}))
    code = _code(verify_report, make_report(chain, chip_id=bytes(64)), CertTable(ask=chain.der("ask")), opts)
    assert code == "attestation.vcek_unavailable"


# ------------------------------------------------------------------------------------------------ cert table


def test_cert_table_round_trip_and_use() -> None:
    chain = make_chain(label="table", amd_names=False)
    blob = fakes.cert_table(
        [
            ("63da758d-e664-4564-adc5-f4b93be8accd", chain.der("leaf")),
            ("4ab7b379-bbac-4fe4-a02f-05aef327c782", chain.der("ask")),
            ("c0b406a4-a803-4952-9743-3fb6014cd0ae", chain.der("ark")),
            ("ecae0c0f-9502-43b1-afa2-0ae2e0d565b6", b"\x02\x0f\x80\x00\x00\x00\x00\x00"),
        ]
    )
    table = parse_cert_table(blob)
    assert table.vcek == chain.der("leaf") and table.ark == chain.der("ark") and table.vlek is None
    assert table.other == (("ecae0c0f-9502-43b1-afa2-0ae2e0d565b6", b"\x02\x0f\x80\x00\x00\x00\x00\x00"),)
    opts = VerifyOptions(now=lambda: NOW, extra_roots=(TrustedRoot.from_fingerprint(fingerprint(chain.ark)),))
    assert verify_report(make_report(chain), table, opts).simulated


def test_cocos_cert_table() -> None:
    from tests.attestation.vectors import SNP

    blob = (SNP / "cocos" / "attestation.bin").read_bytes()[0x4A0:]
    table = parse_cert_table(blob)
    assert table.vcek is None and table.other == (
        ("ecae0c0f-9502-43b1-afa2-0ae2e0d565b6", bytes.fromhex("08000000020f8000")),
    )


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\x01" * 23,
        fakes.cert_table([("63da758d-e664-4564-adc5-f4b93be8accd", b"x")])[:24],  # no terminator
        bytes.fromhex("63da758de6644564adc5f4b93be8accd")
        + (1000).to_bytes(4, "little")
        + (5).to_bytes(4, "little")
        + bytes(24),
        fakes.cert_table(
            [("63da758d-e664-4564-adc5-f4b93be8accd", b"x"), ("63da758d-e664-4564-adc5-f4b93be8accd", b"y")]
        ),
    ],
    ids=["empty", "short", "unterminated", "out-of-range", "duplicate"],
)
def test_malformed_cert_tables(blob: bytes) -> None:
    assert _code(parse_cert_table, blob) == "attestation.cert_table_malformed"


# ------------------------------------------------------------------------------------------------ the result


def test_verified_report_cannot_be_forged_or_changed() -> None:
    chain = make_chain()
    verified = verify_report(make_report(chain), shipped(chain), sim_options(chain))
    with pytest.raises(TypeError):
        VerifiedReport(  # type: ignore[call-arg]
            object(),
            report=verified.report,
            product=verified.product,
            signer=verified.signer,
            chain=verified.chain,
            root="amd",
            root_fingerprint="",
            csp_id=None,
        )
    with pytest.raises(AttributeError):
        verified.root = "amd"  # type: ignore[misc]
    assert "simulated" in repr(verified)
