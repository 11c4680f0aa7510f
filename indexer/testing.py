"""Run the real indexer once over a deployment (for tests, benches and the oracle's test rig)."""

from __future__ import annotations

from typing import Any


def index_settings(rpc_url: str, deployment: Any, db_url: str, chain: str = "local", *, finality_depth: int = 2) -> Any:
    """Settings indexing `deployment` (a chains.evm.deploy.Deployment) into `db_url` (anvil: depth finality)."""
    from core.config import PROTOCOL_CONTRACTS, ChainSettings, ContractSettings, Settings

    contracts = {n: ContractSettings(address=c.address, start_block=c.block_number)
                 for n, c in deployment.contracts.items() if n in PROTOCOL_CONTRACTS}
    return Settings(database={"url": db_url}, chains={chain: ChainSettings(
        rpc_url=rpc_url, contracts=contracts, finality_depth=finality_depth, use_finalized_tag=False,
        poll_interval_s=0.05)})


def index_once(rpc_url: str, deployment: Any, db_url: str, chain: str = "local", *, finality_depth: int = 2) -> None:
    """Run the indexer until it has caught up with the chain head."""
    from indexer.runner import run_once

    settings = index_settings(rpc_url, deployment, db_url, chain, finality_depth=finality_depth)
    assert run_once(settings, db_url=db_url, timeout_s=120) == 0
