"""The public surface of cube_stack.auth.grpc."""

from __future__ import annotations

import cube_stack.auth.grpc as package


def test_all_lists_exactly_the_public_names() -> None:
    public = {name for name in vars(package) if not name.startswith("_")}
    modules = {"client", "codegen", "errors", "server", "tls"}

    assert set(package.__all__) == public - modules
    assert len(package.__all__) == len(set(package.__all__))
