"""TLS to the proxy: a private CA through `tls.caBundle`, and mutual TLS with a client certificate."""

from __future__ import annotations

import pytest

from cube_lsp.cube.client import CubeClient
from cube_lsp.cube.errors import ProxyError
from tests.support.scripted_backend import Reply, ScriptedBackend

from ._helpers import collect, settings_for


async def test_ca_bundle_makes_a_private_ca_trusted(scripted_backend_tls: ScriptedBackend) -> None:
    scripted_backend_tls.script(Reply.stream("secure"))
    assert scripted_backend_tls.url.startswith("https://")
    async with CubeClient(settings_for(scripted_backend_tls)) as client:
        assert await collect(client) == ["secure"]


async def test_without_ca_bundle_the_certificate_is_refused(scripted_backend_tls: ScriptedBackend) -> None:
    async with CubeClient(settings_for(scripted_backend_tls, tls={"caBundle": None})) as client:
        with pytest.raises(ProxyError) as caught:
            await collect(client)
    assert caught.value.code == "proxy.tls"
    assert "tls.caBundle" in caught.value.message
    assert scripted_backend_tls.request_count == 0  # nothing was sent


async def test_mutual_tls_with_client_certificate(scripted_backend_mtls: ScriptedBackend) -> None:
    scripted_backend_mtls.script(Reply.stream("mutual"))
    async with CubeClient(settings_for(scripted_backend_mtls)) as client:
        assert await collect(client) == ["mutual"]


async def test_mutual_tls_without_client_certificate_fails(scripted_backend_mtls: ScriptedBackend) -> None:
    settings = settings_for(scripted_backend_mtls, tls={"clientCert": None, "clientKey": None})
    async with CubeClient(settings) as client:
        with pytest.raises(ProxyError) as caught:
            await collect(client)
    assert caught.value.code == "proxy.tls"
    assert scripted_backend_mtls.request_count == 0


@pytest.mark.parametrize(
    "tls",
    [
        {"caBundle": "/nonexistent/ca.pem"},
        {"clientCert": "/nonexistent/client.pem"},
        {"clientCert": None, "clientKey": "/some/key.pem"},
    ],
    ids=["missing-ca-bundle", "missing-client-cert", "key-without-cert"],
)
async def test_unreadable_tls_material_is_a_tls_error(
    scripted_backend_mtls: ScriptedBackend, tls: dict
) -> None:
    async with CubeClient(settings_for(scripted_backend_mtls, tls=tls)) as client:
        with pytest.raises(ProxyError) as caught:
            await collect(client)
    assert caught.value.code == "proxy.tls"
