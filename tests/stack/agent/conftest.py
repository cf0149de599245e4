"""Fixtures for the agent tests: simulated roots made once per session (RSA-2048 to keep them fast)."""

from __future__ import annotations

import pytest
from cube_agent_testkit import MakeProvider

from cube_lsp.attestation import Product
from cube_stack.agent import SimulatedOptions, SimulatedProvider, SimulatedRoot


@pytest.fixture(scope="session")
def sim_roots() -> dict[Product, SimulatedRoot]:
    """Return a cache of simulated roots by product (an immutable ARK/ASK pair each)."""
    return {}


@pytest.fixture
def make_simulated(sim_roots: dict[Product, SimulatedRoot]) -> MakeProvider:
    """Return ``make(**options)``: a SimulatedProvider over the session's root for that product."""

    def make(**options: object) -> SimulatedProvider:
        opts = SimulatedOptions(**{"rsa_bits": 2048, **options})  # type: ignore[arg-type]
        if opts.product not in sim_roots:
            sim_roots[opts.product] = SimulatedRoot.generate(opts.product, rsa_bits=2048)
        return SimulatedProvider(opts, root=sim_roots[opts.product])

    return make
