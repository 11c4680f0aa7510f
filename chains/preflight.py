"""Start-up check of a chain's node: it answers, and is the configured network (one line otherwise)."""

from __future__ import annotations

from typing import Any

from core.preflight import OperatorError, first_line


def check_rpc(chain: str, settings: Any) -> int:
    """The chain's node answers (evm: eth_chainId, matching `chain_id` when configured; substrate: its genesis
    hash); returns the chain id (0 on substrate)."""
    from core.config import redact_url
    from chains.rpc import RpcClient, RpcError, RpcTransportError

    url = str(settings.rpc_url).rstrip("/")
    shown = redact_url(url, path=not url.startswith(("http://127.", "http://localhost")))
    client = RpcClient(url, timeout_s=min(settings.request_timeout_s, 5.0), retries=0)
    substrate = getattr(settings, "family", "evm") == "substrate"
    try:
        if substrate:  # the genesis hash answers; the SS58 prefix is checked when the reader's runtime is loaded
            genesis = client.call("chain_getBlockHash", [0])
            if not isinstance(genesis, str):
                raise ValueError(f"chain_getBlockHash(0) answered {str(genesis)[:60]!r}")
            return 0
        got = int(client.call("eth_chainId"), 16)
    except (RpcError, RpcTransportError, ValueError, TypeError) as exc:
        raise OperatorError(f"chain {chain}: no JSON-RPC node answers at {shown} ({first_line(exc)})",
                            f"start the node, or fix chains.{chain}.rpc_url") from None
    finally:
        client.close()
    if settings.chain_id is not None and got != settings.chain_id:
        raise OperatorError(f"chain {chain}: the node at {shown} is chain id {got}, the config expects {settings.chain_id}",
                            f"point chains.{chain}.rpc_url at the right node, or fix chains.{chain}.chain_id")
    return got
