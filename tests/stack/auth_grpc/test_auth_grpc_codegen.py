"""Run-time stub generation: digest-keyed entries, regeneration on change, concurrent first use."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cube_stack.auth.grpc import CodegenError, codegen
from cube_stack.auth.grpc.codegen import AUTH_PROTO, PROTO_ROOT, generate, proto_digest


@pytest.fixture
def proto_root(tmp_path: Path) -> Path:
    root = tmp_path / "proto"
    shutil.copytree(PROTO_ROOT, root)
    return root


def entry_files(entry: Path) -> set[str]:
    return {p.name for p in entry.iterdir()}


def test_entry_is_named_by_digest_and_importable_as_one_package(proto_root: Path, tmp_path: Path) -> None:
    entry = generate(tmp_path / "cache", proto_root=proto_root)

    assert entry.name == f"stubs_{proto_digest(proto_root)[:32]}"
    assert entry_files(entry) == {"__init__.py", "auth_pb2.py", "auth_pb2_grpc.py"}
    assert "from . import auth_pb2 as " in (entry / "auth_pb2_grpc.py").read_text()


def test_unchanged_proto_reuses_the_entry_without_protoc(
    proto_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = generate(tmp_path / "cache", proto_root=proto_root)

    def fail(*args: object) -> None:
        raise AssertionError("protoc must not run for an unchanged proto")

    monkeypatch.setattr(codegen, "_run_protoc", fail)

    assert generate(tmp_path / "cache", proto_root=proto_root) == first


def test_changed_proto_regenerates(proto_root: Path, tmp_path: Path) -> None:
    before = generate(tmp_path / "cache", proto_root=proto_root)
    proto = proto_root / AUTH_PROTO
    proto.write_text(
        proto.read_text().replace("bool verified = 4;", "bool verified = 4;\n  string tenant = 5;")
    )

    after = generate(tmp_path / "cache", proto_root=proto_root)

    assert after != before
    assert "tenant" in (after / "auth_pb2.py").read_text()
    assert "tenant" not in (before / "auth_pb2.py").read_text()


def test_concurrent_first_use_yields_one_complete_entry(proto_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    start = threading.Barrier(4)

    def race() -> Path:
        start.wait()
        return generate(cache, proto_root=proto_root)

    with ThreadPoolExecutor(4) as pool:
        entries = set(pool.map(lambda _: race(), range(4)))

    assert len(entries) == 1
    (entry,) = entries
    assert entry_files(entry) == {"__init__.py", "auth_pb2.py", "auth_pb2_grpc.py"}
    assert [p.name for p in cache.iterdir()] == [entry.name]  # no staging directory left behind


def test_protoc_failure_is_a_codegen_error_and_leaves_nothing(proto_root: Path, tmp_path: Path) -> None:
    (proto_root / AUTH_PROTO).write_text('syntax = "proto3";\nmessage Broken {')

    with pytest.raises(CodegenError) as raised:
        generate(tmp_path / "cache", proto_root=proto_root)

    assert raised.value.code == "auth.grpc_codegen"
    assert list((tmp_path / "cache").iterdir()) == []


def test_ensure_generated_loads_messages_and_service(tmp_path: Path) -> None:
    stubs = codegen.ensure_generated(tmp_path / "cache")

    assert stubs.auth_pb2.AuthZReq().HasField("pat_req") is False
    assert hasattr(stubs.auth_pb2_grpc, "add_AuthServiceServicer_to_server")
    assert codegen.ensure_generated(tmp_path / "cache").auth_pb2 is stubs.auth_pb2


def test_prebuilt_stubs_named_by_the_environment_load_without_protoc(
    proto_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CVM image carries stubs its build made and no grpcio-tools: CUBE_AUTH_GRPC_STUBS loads them."""
    entry = generate(tmp_path / "cache", proto_root=proto_root)
    prebuilt = tmp_path / "image" / "auth_grpc_stubs"
    shutil.copytree(entry, prebuilt)
    monkeypatch.setenv(codegen.PREBUILT_ENV, str(prebuilt))
    monkeypatch.setattr(codegen, "_run_protoc", None)  # any attempt to generate would fail loudly
    stubs = codegen.ensure_generated()
    assert Path(stubs.auth_pb2.__file__).parent == prebuilt
    assert hasattr(stubs.auth_pb2_grpc, "AuthServiceStub")
