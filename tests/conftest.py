"""Shared fixtures: the SCRIPTED BACKEND (tests/support) is available to every test package."""

from tests.support.fixtures import *  # noqa: F403 - pytest finds the fixtures by name
