"""The public surface of cube_stack.auth.grpc (exported lazily, so a client does not load the server)."""

from __future__ import annotations

import cube_stack.auth.grpc as package


def test_all_lists_exactly_the_exported_names_and_each_resolves() -> None:
    assert set(package.__all__) == set(package._EXPORTS)
    assert len(package.__all__) == len(set(package.__all__))
    for name in package.__all__:
        assert getattr(package, name).__name__ == name


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        package.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("no AttributeError")
