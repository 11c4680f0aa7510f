"""Start-up check of a chain's node: it answers, and is the configured network (one line otherwise). Each family's
reader says how (`ChainReader.check_node`)."""

from __future__ import annotations

from typing import Any


def rpc_client(settings: Any) -> tuple[Any, str]:
    """A JSON-RPC client for a start-up check (short timeout, no retries) and the URL as it may be shown."""
    from core.config import redact_url
    from chains.rpc import RpcClient

    url = str(settings.rpc_url).rstrip("/")
    shown = redact_url(url, path=not url.startswith(("http://127.", "http://localhost")))
    return RpcClient(url, timeout_s=min(settings.request_timeout_s, 5.0), retries=0), shown


def expect_chain_id(name: str, settings: Any, shown: str, got: int) -> int:
    """`got` when the config names no chain id or the same one; else the one-line error naming both keys to fix."""
    from core.preflight import OperatorError

    if settings.chain_id is not None and got != settings.chain_id:
        preset = getattr(settings, "preset", None)
        fix = f"chains.{name}.preset" if preset else f"chains.{name}.chain_id"
        raise OperatorError(f"chain {name}: the node at {shown} is chain id {got}, the config expects "
                            f"{settings.chain_id}" + (f" (preset {preset})" if preset else ""),
                            f"point chains.{name}.rpc_url at the right node, or fix {fix}")
    return got


def check_rpc(chain: str, settings: Any) -> int:
    """The chain's node answers and is the configured network (evm: eth_chainId, matching `chain_id` when configured;
    substrate: its genesis hash; aptos: GET /v1, matching `chain_id`); returns the chain id (0 on substrate)."""
    from chains.base import load_family

    return load_family(getattr(settings, "family", "evm")).reader.check_node(chain, settings)
