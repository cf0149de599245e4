"""HOST_DATA: a digest of the deployment settings that any client can recompute from the same settings."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from cube_wire.host_data import (
    HostDataError,
    host_data_digest,
    host_data_from_file,
    parse_deployment_settings,
)
from tests.hal.conftest import SETTINGS


def test_the_digest_is_sha256_of_the_documented_canonical_bytes():
    canonical = b'{"auth_endpoint":"https://auth.example.com","domain":"d-1","log_level":"info","version":1}'
    assert host_data_digest(parse_deployment_settings(SETTINGS)) == hashlib.sha256(canonical).digest()


def test_formatting_of_the_file_does_not_matter(tmp_path: Path):
    pretty, compact = tmp_path / "a.json", tmp_path / "b.json"
    pretty.write_text(json.dumps(SETTINGS, indent=4))
    compact.write_text(json.dumps(dict(reversed(SETTINGS.items()))))
    assert host_data_from_file(pretty) == host_data_from_file(compact)


@pytest.mark.parametrize("key", ["auth_endpoint", "domain", "log_level"])
def test_each_setting_changes_the_digest(key: str):
    changed = {**SETTINGS, key: "debug" if key == "log_level" else SETTINGS[key] + "x"}
    digest = host_data_digest(parse_deployment_settings(changed))
    assert digest != host_data_digest(parse_deployment_settings(SETTINGS))


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({**SETTINGS, "log_level": "verbose"}, "log_level"),
        ({**SETTINGS, "auth_endpoint": "ftp://x"}, "auth_endpoint"),
        ({**SETTINGS, "version": 2}, "version"),
        ({**SETTINGS, "extra": 1}, "extra"),
        ({k: v for k, v in SETTINGS.items() if k != "domain"}, "domain"),
        ({**SETTINGS, "domain": ""}, "domain"),
    ],
)
def test_bad_settings_name_the_key(settings: dict[str, object], field: str):
    with pytest.raises(HostDataError) as caught:
        parse_deployment_settings(settings)
    assert (caught.value.code, caught.value.field) == ("host_data.invalid", field)


def test_the_auth_grpc_address_and_ca_are_bound_when_given():
    import trustme

    ca = trustme.CA().cert_pem.bytes().decode()
    plain = host_data_digest(parse_deployment_settings(SETTINGS))
    with_grpc = parse_deployment_settings({**SETTINGS, "auth_grpc": "auth.example.com:7001"})
    with_ca = parse_deployment_settings(
        {**SETTINGS, "auth_grpc": "auth.example.com:7001", "auth_grpc_ca": ca}
    )
    assert b'"auth_grpc":"auth.example.com:7001"' in with_grpc.canonical_bytes()
    assert len({plain, host_data_digest(with_grpc), host_data_digest(with_ca)}) == 3
    assert with_ca.auth_grpc_ca == ca


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("auth_grpc", "no-port"),
        ("auth_grpc", "host:99999"),
        ("auth_grpc", 8181),
        ("auth_grpc_ca", "not a certificate"),
        ("auth_grpc_ca", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"),
    ],
)
def test_a_bad_auth_grpc_setting_is_named(key: str, value: object):
    with pytest.raises(HostDataError) as caught:
        parse_deployment_settings({**SETTINGS, key: value})
    assert caught.value.field == key
