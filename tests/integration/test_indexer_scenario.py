"""A few hundred random protocol actions on anvil; the indexed tables equal the ground truth from the chain."""

from __future__ import annotations

import pytest
from web3 import Web3

from indexer.runner import run_once
from tests.integration.scenario import deploy, ground_truth, indexed_state, run_scenario, settings_for

pytestmark = pytest.mark.anvil


@pytest.mark.parametrize("cache_limit", [1_000_000, 3], ids=["cached", "lazy-cache"])
def test_scenario_matches_chain(anvil, db_url, cache_limit):
    w3 = Web3(Web3.HTTPProvider(anvil.url))
    dep = deploy(w3)
    counts = run_scenario(w3, dep, actions=300, seed=7)
    assert counts["ok"] > 200
    settings = settings_for(anvil.url, dep, db_url, max_block_range=50)
    assert run_once(settings, db_url=db_url, cache_limit=cache_limit) == 0
    expected, got = ground_truth(w3, dep), indexed_state(db_url, "dev")
    assert expected.holdings and expected.listings and expected.orders and expected.retirements
    assert got == expected, expected.diff(got)
    # Replay is a no-op: a second pass over the same chain changes nothing.
    assert run_once(settings, db_url=db_url, cache_limit=cache_limit) == 0
    assert indexed_state(db_url, "dev") == expected
