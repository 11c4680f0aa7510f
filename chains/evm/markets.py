"""Existing carbon markets (Toucan, Klima, ICR, Carbonmark): their shipped event ABIs and the configured contracts.

A market protocol is one file, abis/markets/<protocol>.json: {"protocol", "contract", "token" (erc20 | erc1155 for
token contracts, whose token ids may carry registry details in config), "note", "source", "abi"}, the
ABI holding only the events carbonledger maps (copied from the real contract's ABI, attribution in "source"). Its
logs decode as ChainEvents of contract "<contract>" (e.g. "ToucanCarbonOffsets:Retired"), handled by one module in
indexer/handlers/. Several addresses may share a protocol (every TCO2 is its own ERC-20).

External batch ids (the `batch_id` of holdings, ledger rows, listings of external credits) are
`int(token address) << 96 | token id`: ERC-20 credits (TCO2) have token id 0, ERC-1155 credits (ICR) their id
(below 2**96). Deterministic, reversible (`split_batch_id`) and disjoint from carbonledger's own CarbonCredit
batch ids, which are counters far below 2**96; Carbonmark's (token, tokenId) listings map onto the same ids.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from chains.evm.artifacts import ABIS_DIR

MARKETS_DIR = ABIS_DIR / "markets"
TOKEN_ID_BITS = 96


@lru_cache(maxsize=None)
def market_protocols(markets_dir: str = str(MARKETS_DIR)) -> dict[str, dict[str, Any]]:
    """protocol name -> its ABI document, for every abis/markets/<protocol>.json."""
    out = {}
    for path in sorted(Path(markets_dir).glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("protocol") != path.stem or not doc.get("contract") or not isinstance(doc.get("abi"), list):
            raise ValueError(f"{path}: a market ABI needs protocol (= file name), contract and abi")
        out[path.stem] = doc
    return out


def external_batch_id(token: str, token_id: int = 0) -> int:
    """The batch id of credits held as `token_id` of contract `token` (ERC-20: token id 0)."""
    if not 0 <= token_id < 1 << TOKEN_ID_BITS:
        raise ValueError(f"token id {token_id} of {token} does not fit in {TOKEN_ID_BITS} bits")
    if int(token, 16) == 0:  # would be carbonledger's own batch `token_id`
        raise ValueError("the zero address is not a token")
    return int(token, 16) << TOKEN_ID_BITS | token_id


def split_batch_id(batch_id: int) -> tuple[str | None, int]:
    """(token address, token id) of an external batch id; (None, batch_id) for carbonledger's own batches."""
    token = batch_id >> TOKEN_ID_BITS
    if token == 0:
        return None, batch_id
    return "0x" + format(token, "040x"), batch_id & ((1 << TOKEN_ID_BITS) - 1)


def resolved_markets(settings: Any, chain: str) -> list[tuple[str, str, int, list[dict]]]:
    """(contract name, lowercase address, start block, event ABI) per configured market of an evm chain's
    settings; ConfigError naming the entry when its protocol is unknown or its address is also a protocol
    contract's."""
    from core.config import ConfigError

    known = market_protocols()
    ours = {c.address.lower() for c in settings.contracts.values() if c.address}
    out = []
    for i, m in enumerate(settings.markets):
        doc = known.get(m.protocol)
        if doc is None:
            raise ConfigError(f"chains.{chain}.markets[{i}].protocol: unknown market protocol {m.protocol!r} "
                              f"(known: {', '.join(sorted(known))})")
        if m.address.lower() in ours:
            raise ConfigError(f"chains.{chain}.markets[{i}].address: {m.address} is also a carbonledger contract")
        token = doc.get("token")
        for token_id in m.batches:
            if token is None or (token == "erc20" and token_id != 0) or not 0 <= token_id < 1 << TOKEN_ID_BITS:
                raise ConfigError(f"chains.{chain}.markets[{i}].batches.{token_id}: "
                                  + (f"{m.protocol} is not a token contract" if token is None else
                                     "an ERC-20 (one token per contract) has only token id 0" if token == "erc20"
                                     else f"a token id is below 2**{TOKEN_ID_BITS}"))
        out.append((doc["contract"], m.address.lower(), m.start_block, doc["abi"]))
    return out


def batch_labels(settings: Any) -> dict[int, dict[str, Any]]:
    """External batch id -> the registry details configured for it (`markets[].batches`), with `unit`: base units
    per registry serial (10**decimals)."""
    out = {}
    for m in settings.markets:
        for token_id, b in m.batches.items():
            label = b.model_dump(exclude={"decimals"})
            label["unit"] = 10 ** b.decimals
            out[external_batch_id(m.address.lower(), token_id)] = label
    return out
