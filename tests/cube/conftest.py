"""Registers the scripted-backend fixtures for the cube client tests."""

try:  # `tests` is a package once tests/__init__.py exists; until then tests/ itself is on sys.path
    from tests.support.fixtures import *  # noqa: F403
except ModuleNotFoundError:
    from support.fixtures import *  # type: ignore[no-redef]  # noqa: F403
