"""Our auth.proto against SuperMQ's contract: both compiled by protoc, descriptors compared field by field.

The contract lives beside the repository (``../shared/contracts/supermq``, which CI has too; override with
``$CUBE_SUPERMQ_CONTRACTS``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from cube_stack.auth.grpc.codegen import AUTH_PROTO, PROTO_ROOT

_SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "contracts" / "supermq"
CONTRACT_ROOT = Path(os.environ.get("CUBE_SUPERMQ_CONTRACTS", _SHARED)) / "proto"


def describe(proto_root: Path, out: Path) -> descriptor_pb2.FileDescriptorProto:
    """Compile ``auth/v1/auth.proto`` under ``proto_root`` and return its descriptor."""
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={proto_root}",
        f"--descriptor_set_out={out}",
        AUTH_PROTO,
    ]
    subprocess.run(command, check=True, capture_output=True)
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return next(f for f in files if f.name == AUTH_PROTO)


def shape(file: descriptor_pb2.FileDescriptorProto) -> dict[str, Any]:
    """Everything that decides wire compatibility (and reflection names), nothing cosmetic."""
    field = descriptor_pb2.FieldDescriptorProto
    return {
        "package": file.package,
        "syntax": file.syntax,
        "dependencies": sorted(file.dependency),
        "enums": sorted(e.name for e in file.enum_type),
        "messages": {
            message.name: {
                "fields": {
                    f.number: {
                        "name": f.name,
                        "type": field.Type.Name(f.type),
                        "label": field.Label.Name(f.label),
                        "type_name": f.type_name,
                        "proto3_optional": f.proto3_optional,
                        "oneof": message.oneof_decl[f.oneof_index].name
                        if f.HasField("oneof_index")
                        else None,
                    }
                    for f in message.field
                },
                "nested": sorted(n.name for n in message.nested_type),
                "enums": sorted(e.name for e in message.enum_type),
            }
            for message in file.message_type
        },
        "services": {
            service.name: {
                m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
                for m in service.method
            }
            for service in file.service
        },
    }


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not (CONTRACT_ROOT / AUTH_PROTO).is_file():
        pytest.fail(
            f"SuperMQ contract not found at {CONTRACT_ROOT / AUTH_PROTO}: ../shared must sit beside the repo"
        )
    return shape(describe(CONTRACT_ROOT, tmp_path_factory.mktemp("contract") / "set.bin"))


def test_our_proto_matches_the_contract(contract: dict[str, Any], tmp_path: Path) -> None:
    ours = shape(describe(PROTO_ROOT, tmp_path / "ours.bin"))

    assert ours == contract


def test_the_contract_has_what_we_rely_on(contract: dict[str, Any]) -> None:
    assert contract["package"] == "auth.v1"
    assert set(contract["services"]["AuthService"]) == {"Authenticate", "Authorize"}
    assert contract["messages"]["AuthZReq"]["fields"][2]["proto3_optional"] is True


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("string user_id = 2;    // user UUID", "string user_id = 5;    // user UUID"),
        ("uint32 user_role = 3;", "int32 user_role = 3;"),
        ("optional PATReq pat_req = 2;", "PATReq pat_req = 2;"),
        (
            "rpc Authenticate(AuthNReq) returns (AuthNRes) {}",
            "rpc Authenticate(AuthNReq) returns (AuthZRes) {}",
        ),
        ("string entity_type = 6;", "string entity_kind = 6;"),
    ],
    ids=["field-number", "field-type", "optional-dropped", "method-signature", "field-name"],
)
def test_drift_is_caught(contract: dict[str, Any], tmp_path: Path, old: str, new: str) -> None:
    text = (PROTO_ROOT / AUTH_PROTO).read_text()
    assert text.count(old) == 1, old
    drifted = tmp_path / "proto" / AUTH_PROTO
    drifted.parent.mkdir(parents=True)
    drifted.write_text(text.replace(old, new))

    assert shape(describe(tmp_path / "proto", tmp_path / "drifted.bin")) != contract
