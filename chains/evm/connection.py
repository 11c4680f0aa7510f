"""Connecting to an EVM chain: a web3 instance (signing, deploy, contract calls) and a raw RpcClient (hot paths),
both with retries and timeouts, both checked against the configured chain id."""

from __future__ import annotations

from dataclasses import dataclass

from web3 import HTTPProvider, Web3
from web3.providers.rpc.utils import ExceptionRetryConfiguration

from chains.base import ChainIdMismatch
from chains.rpc import RpcClient


@dataclass
class EvmConnection:
    chain: str
    url: str
    w3: Web3
    rpc: RpcClient
    chain_id: int

    def close(self) -> None:
        self.rpc.close()


def connect(chain: str, url: str, *, expected_chain_id: int | None = None, timeout_s: float = 10.0, retries: int = 6) -> EvmConnection:
    """Open both clients and verify the chain id (raises ChainIdMismatch naming both ids)."""
    import requests

    provider = HTTPProvider(
        url,
        request_kwargs={"timeout": timeout_s},
        exception_retry_configuration=ExceptionRetryConfiguration(
            errors=(requests.ConnectionError, requests.Timeout, requests.HTTPError), retries=retries, backoff_factor=0.1
        ),
    )
    w3 = Web3(provider)
    rpc = RpcClient(url, timeout_s=timeout_s, retries=retries)
    got = int(rpc.call("eth_chainId"), 16)
    if expected_chain_id is not None and got != expected_chain_id:
        rpc.close()
        raise ChainIdMismatch(f"chain {chain!r}: node at {url} reports chain id {got}, config expects {expected_chain_id}")
    return EvmConnection(chain, url, w3, rpc, got)


__all__ = ["EvmConnection", "connect"]
