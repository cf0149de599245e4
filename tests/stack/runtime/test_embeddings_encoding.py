"""OpenAI ``encoding_format`` on ``/v1/embeddings``: parsing and the base64 wire format (no model needed)."""

from __future__ import annotations

import base64
import struct

import pytest

from cube_stack.runtime.embeddings import float32_base64
from cube_stack.runtime.errors import BadRequestError
from cube_stack.runtime.requests import parse_openai_embeddings

BODY = {"model": "all-minilm:l6-v2", "input": ["def f(): pass"]}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, "float"),
        ({"encoding_format": None}, "float"),
        ({"encoding_format": "float"}, "float"),
        ({"encoding_format": "base64"}, "base64"),
    ],
)
def test_float_is_the_default_and_base64_is_accepted(extra: dict[str, object], expected: str) -> None:
    assert parse_openai_embeddings(BODY | extra).encoding_format == expected


@pytest.mark.parametrize("value", ["binary", "BASE64", "", 1, True, ["base64"], {"kind": "float"}])
def test_any_other_encoding_is_a_400(value: object) -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_openai_embeddings(BODY | {"encoding_format": value})
    assert caught.value.code == "runtime.bad_request" and caught.value.status == 400


def test_base64_is_little_endian_float32_bytes() -> None:
    # 1.0 is 0x3f800000 and -2.5 is 0xc0200000; little-endian puts the low byte first.
    encoded = float32_base64([1.0, -2.5])
    assert base64.b64decode(encoded) == bytes.fromhex("0000803f000020c0")


def test_base64_round_trips_float32_values_exactly() -> None:
    values = list(struct.unpack("<5f", struct.pack("<5f", 0.1, -0.33, 1e-8, 0.0, 0.999)))
    decoded = struct.unpack("<5f", base64.b64decode(float32_base64(values)))
    assert list(decoded) == values
    assert float32_base64([]) == ""
