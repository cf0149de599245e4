"""Boot the built image under QEMU (TCG, ``--no-sev``) and use it as a client would.

The host side is real: ``cube-stack auth serve`` on loopback (the guest reaches it at QEMU user
networking's 10.0.2.2), the config disk made by ``cube-stack hal config-disk``, the QEMU arguments from
``cube-stack hal launch-args --no-sev``. Inside, the image's own /init loads the modules, brings up the
network, checks the settings against HOST_DATA, starts the proxy (SIMULATED agent: there is no SEV-SNP
here, and the measured command line says so) and the llama.cpp runtime serving the generated demo model
only because its hash is on the image's list. The client then attests the CVM with a policy pinning the
settings' HOST_DATA, and completes through it. Readiness is always a console line; nothing sleeps.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
from process_kit import OutputReader, free_port
from standalone_kit import AuthProcess, cube_stack, cube_stack_json

from cube_stack.agent.simulated import SIMULATED_MEASUREMENT
from cube_stack.hal.embedding_model import convert_minilm, find_converter
from tests.hal.image.image_kit import REPO, Built

pytestmark = pytest.mark.slow

QEMU = shutil.which("qemu-system-x86_64")
AMDSEV = REPO.parent / "shared" / "testvectors" / "snp" / "measure" / "ovmf_AmdSev_suffix.bin"
EMBEDDING_FILE = "all-minilm:l6-v2.embedding.gguf"  # served as all-minilm:l6-v2, the client's default
BOOT_TIMEOUT = 300.0  # TCG emulates every instruction: about 20 s to the proxy on this 2-core machine


@dataclass
class Cvm:
    """A booted image and what a client needs to use it."""

    endpoint: str
    domain: str
    token: str
    simulated_root: str
    host_data: str
    console: OutputReader
    boot_seconds: float
    embedder: Path  # the GGUF all-MiniLM-L6-v2 the guest serves, as converted on the host


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def cvm(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cvm]:
    if QEMU is None:
        pytest.fail("qemu-system-x86_64 is not installed: apt-get install qemu-system-x86 (.ci/run does)")
    work = tmp_path_factory.mktemp("cvm")
    database = str(work / "auth.db")
    # auth.v1 over TLS, verified in the guest by the CA the HOST_DATA-bound settings carry; the guest
    # reaches the host's loopback at 10.0.2.2, so that is the name in the certificate.
    ca = trustme.CA()
    issued = ca.issue_cert("10.0.2.2")
    issued.private_key_and_cert_chain_pem.write_to_path(str(work / "grpc.pem"))
    tls = ["--grpc-tls-cert", str(work / "grpc.pem"), "--grpc-tls-key", str(work / "grpc.pem")]
    auth = AuthProcess.serve(
        ["--database-url", database, "--http-listen", "127.0.0.1:0", "--grpc-listen", "127.0.0.1:0", *tls]
    )
    guest = None
    try:
        domain = cube_stack_json("domain", "create", "Acme", "--route", "acme", "--database-url", database)[
            "id"
        ]
        token = cube_stack_json(
            "token", "create", "--domain", domain, "--duration", "1h", "--database-url", database
        )["token"]
        http_port = auth.http_url.rsplit(":", 1)[1]
        grpc_port = auth.grpc_target.rsplit(":", 1)[1]
        settings = {
            "version": 1,
            "auth_endpoint": f"http://10.0.2.2:{http_port}",
            "domain": domain,
            "log_level": "info",
            "auth_grpc": f"10.0.2.2:{grpc_port}",
            "auth_grpc_ca": ca.cert_pem.bytes().decode(),
        }
        (work / "settings.json").write_text(json.dumps(settings))
        embedder = work / EMBEDDING_FILE
        convert_minilm(embedder, converter=find_converter())  # its hash is on the image's production list
        disk = cube_stack(
            "hal", "config-disk", "-o", str(work / "config.tar"), "--settings", str(work / "settings.json"),
            "--model", str(built.demo_model), "--model", str(embedder),
        )  # fmt: skip
        host_data = disk.split("HOST_DATA ")[1].strip()
        shutil.copy(AMDSEV, work / "OVMF.fd")
        port = free_port()
        cmdline = "console=ttyS0 panic=-1 cube.attestation=simulated"
        (work / "deployment.toml").write_text(
            f'version = 1\nfirmware = "OVMF.fd"\nkernel = "{built.first.kernel}"\n'
            f'initramfs = "{built.first.initramfs}"\ncmdline = "{cmdline}"\n'
            'vcpus = 2\nvcpu_type = "EPYC-v4"\nmemory = "2G"\n'
            'host_data = "settings.json"\nconfig_disk = "config.tar"\n'
            f"[[ports]]\nhost = {port}\nguest = 8443\n"
        )
        launch = cube_stack(
            "hal", "launch-args", "--deployment", str(work / "deployment.toml"), "--no-sev", "--null"
        )
        started = time.monotonic()
        guest = subprocess.Popen(
            [QEMU, *launch.split("\0")[:-1]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        console = OutputReader(guest.stdout)
        root = console.wait_for(r"root_of_trust simulated=([0-9a-f]{64})", timeout=BOOT_TIMEOUT).group(1)
        console.wait_for(r"runtime ready", timeout=BOOT_TIMEOUT)
        boot = time.monotonic() - started
        print(f"\nboot under TCG, QEMU start to runtime ready: {boot:.1f} s")
        yield Cvm(f"https://127.0.0.1:{port}", domain, token, root, host_data, console, boot, embedder)
    finally:
        if guest is not None:
            guest.kill()
            guest.wait(timeout=30)
            if guest.stdout is not None:
                guest.stdout.close()
        auth.stop()


def policy(cvm: Cvm, path: Path, host_data: str) -> Path:
    cube_stack(
        "policy", "from-measurement", SIMULATED_MEASUREMENT.hex(), "--simulated-root", cvm.simulated_root,
        "--host-data", host_data, "-o", str(path),
    )  # fmt: skip
    return path


def cube(*args: str) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "cube_lsp.cli", *args)


def test_the_guest_checked_its_settings_and_loaded_only_listed_models(cvm: Cvm) -> None:
    text = cvm.console.text
    assert f"settings HOST_DATA {cvm.host_data}" in text
    assert "attestation is SIMULATED" in text  # said on the console, as everywhere else
    assert "login:" not in text and "# " not in text.splitlines()[-1]  # no shell, no getty


def test_health_answers_through_the_forwarded_port_with_the_key_it_serves(cvm: Cvm) -> None:
    """/health needs no token; its key hash is the one the proxy logged and the one its TLS presents."""
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    host, port = cvm.endpoint.removeprefix("https://").rsplit(":", 1)
    response = httpx.get(f"{cvm.endpoint}/health", verify=False, timeout=60)  # a probe: no token, no code
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "pass" and health["tls"] is True
    logged = re.search(r"proxy\.listening url=\S+ tls=True spki_sha256=([0-9a-f]{64})", cvm.console.text)
    assert logged is not None and health["spki_sha256"] == logged.group(1)
    certificate = x509.load_pem_x509_certificate(ssl.get_server_certificate((host, int(port))).encode())
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert hashlib.sha256(spki).hexdigest() == health["spki_sha256"]


def test_a_client_attests_the_booted_image_with_its_host_data_pinned(cvm: Cvm, tmp_path: Path) -> None:
    pinned = policy(cvm, tmp_path / "policy.json", cvm.host_data)
    done = cube("attest", "endpoint", cvm.endpoint, "--domain", cvm.domain, "--policy", str(pinned))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SIMULATED")


def test_a_policy_pinning_other_settings_refuses_the_image(cvm: Cvm, tmp_path: Path) -> None:
    other = hashlib.sha256(b"another deployment's settings").hexdigest()
    pinned = policy(cvm, tmp_path / "policy.json", other)
    done = cube("attest", "endpoint", cvm.endpoint, "--domain", cvm.domain, "--policy", str(pinned))
    assert done.returncode != 0, done.stdout
    assert done.stdout.startswith("FAILED [attestation.host_data_mismatch]"), done.stdout
    assert cvm.host_data in done.stdout and "Nothing was sent." in done.stdout


def test_a_completion_runs_through_the_booted_image(cvm: Cvm, tmp_path: Path) -> None:
    source = tmp_path / "calc.py"
    source.write_text("def add(a, b):\n    return \n")
    settings = tmp_path / "client.json"
    settings.write_text(
        json.dumps(
            {
                "endpoint": cvm.endpoint,
                "domain": cvm.domain,
                "token": cvm.token,
                "api": "ollama",
                "models": {"completion": "demo"},
                "attestation": {
                    "mode": "simulated",
                    "policy": str(policy(cvm, tmp_path / "p.json", cvm.host_data)),
                },
            }
        )
    )
    started = time.monotonic()
    done = cube("complete", "--settings", str(settings), f"{source}:2:11")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()  # random weights: some text, through TLS, the proxy and llama.cpp in the guest
    print(f"\ncube complete through the TCG guest: {time.monotonic() - started:.1f} s")


def test_the_guest_embeds_with_llama_cpp_as_the_host_does(cvm: Cvm) -> None:
    """No torch in the image: the GGUF all-MiniLM-L6-v2 answers /api/embed through the proxy, and its vector
    is the one llama.cpp gives for the same file on the host (the host library is built for another CPU,
    so equal up to rounding)."""
    import numpy as np

    from cube_stack.runtime.gguf_embeddings import LlamaEmbedder

    text = "def refresh_access_token(session): return session.post('/tokens/refresh')"
    response = httpx.post(
        f"{cvm.endpoint}/{cvm.domain}/api/embed",
        json={"model": "all-minilm:l6-v2", "input": [text]},
        headers={"Authorization": f"Bearer {cvm.token}"},
        verify=False,  # the transport's attestation has its own tests above; this is about the model
        timeout=120,
    )
    assert response.status_code == 200, response.text
    (guest,) = response.json()["embeddings"]
    host_embedder = LlamaEmbedder("all-minilm:l6-v2", cvm.embedder)
    try:
        (host,) = host_embedder.embed([text]).vectors
    finally:
        host_embedder.close()
    assert len(guest) == 384
    assert float(np.dot(np.asarray(guest), np.asarray(host))) > 0.9999
