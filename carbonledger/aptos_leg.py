"""The demo's Aptos leg: the same credits as Move fungible assets, on a STAND-IN fullnode (no Aptos node runs here).

The stand-in (chains.aptos.standin) answers the REST API with the shapes of aptos-core's recorded answers and
models the package's effects; it is not a chain. The package's publisher creates the batch and mints the verified
grams to the EV owner, who lists them; the oracle's key settles the buyer's card payment (`settle_offchain`, a
payment reference refused twice) and stores the devnet's IoT root (`store_data_hash`); the buyer retires half.
Every write is built, signed and submitted by chains.aptos.writer (aptos-sdk); the indexer follows the chain as
`aptos`. Keys are fixed (the demo is reproducible) and worthless.
"""

from __future__ import annotations

import time
from typing import Any

CHAIN = "aptos"
SEEDS = {"publisher": "0x" + "a1" * 32, "oracle": "0x" + "a2" * 32, "ev_owner": "0x" + "a3" * 32,
         "buyer": "0x" + "a4" * 32}


def _accounts() -> dict[str, Any]:
    from aptos_sdk.account import Account

    return {name: Account.load_key("ed25519-priv-" + seed) for name, seed in SEEDS.items()}


def start(enabled: bool) -> tuple[Any, str | None]:
    """(a running stand-in fullnode, None), or (None, why the leg is skipped)."""
    if not enabled:
        return None, "turned off"
    from chains.aptos.standin import StandInNode

    acct = _accounts()
    node = StandInNode(str(acct["publisher"].address()))
    node.url = node.start()
    node.grant("oracle", str(acct["oracle"].address()))
    return node, None


def chain_settings(demo: Any) -> dict[str, Any]:
    """The `aptos` chain for the demo's settings (empty when the leg is skipped)."""
    if demo.aptos_node is None:
        return {}
    return {CHAIN: {"family": "aptos", "rpc_url": demo.aptos_node.url, "chain_id": 4, "poll_interval_s": 0.2,
                    "aptos_package": demo.aptos_node.package}}


def story(demo: Any, st: Any, minted: int, bought: int) -> None:
    """The leg's steps, added to the story with their transaction hashes; waits until `aptos` is indexed."""
    import psycopg

    from chains.aptos.writer import AptosWriter
    from chains.base import TxRequest, TxState

    node = demo.aptos_node
    acct = _accounts()
    w = {n: AptosWriter(CHAIN, node.url, a, node.package) for n, a in acct.items()}

    def send(who: str, contract: str, function: str, *args: Any) -> str:
        req = TxRequest(CHAIN, contract, function, args)
        n = w[who].next_nonce()
        tx, raw = w[who].sign(req, n, w[who].fees(req, n))
        w[who].broadcast(raw)
        deadline = time.monotonic() + 30
        while (s := w[who].status(tx)).state is TxState.PENDING and time.monotonic() < deadline:
            time.sleep(0.1)
        if s.state is not TxState.MINED:
            raise RuntimeError(f"Aptos transaction {tx} {s.state.value}: {s.error}")
        return tx

    with psycopg.connect(demo.db_url, autocommit=True) as conn:
        vhash, root, leaves, start_, end, quality = conn.execute(
            "SELECT (SELECT args->>3 FROM oracle_intent WHERE contract = 'CarbonCredit' ORDER BY id LIMIT 1), root, "
            "leaf_count, window_start, window_end, quality_score FROM oracle_iot_anchor ORDER BY id LIMIT 1").fetchone()
    owner, buyer = (str(acct[n].address()) for n in ("ev_owner", "buyer"))
    label = "Aptos (a stand-in fullnode speaking the recorded REST shapes; no Aptos node runs here)"
    tx = send("publisher", "carbon_credit", "create_batch", "EV-NBO-001", 2026, "seed:EV-displacement-120-20",
              "carbonledger-demo", "CLD-EV-NBO-2026-0001", vhash)
    st.add(f"{label}: the batch is Move fungible asset #1", tx, "carbon_credit::create_batch")
    tx = send("publisher", "CarbonCredit", "mint", owner, 1, minted, vhash)
    st.add(f"Aptos: {minted} g minted to the EV owner", tx, "carbon_credit::mint")
    tx = send("ev_owner", "Marketplace", "list", 1, minted // 2, 1)
    st.add(f"Aptos: the EV owner listed {minted // 2} g", tx, "marketplace::list")
    tx = send("oracle", "Marketplace", "settleOffchain", "1", buyer, str(bought), "demo-aptos-card-1")
    st.add(f"Aptos: the buyer's card payment settled by the oracle's key: {bought} g", tx, "marketplace::settle_offchain")
    tx = send("buyer", "CarbonCredit", "retire", 1, bought // 2, "Acme Logistics Ltd", "FY2026 scope 3 offset")
    st.add(f"Aptos: the buyer retired {bought // 2} g", tx, "carbon_credit::retire")
    tx = send("oracle", "IoTAnchor", "anchor", root, int(leaves), int(start_), int(end), int(quality))
    st.add("Aptos: the same IoT Merkle root stored", tx, "iot_verification::store_data_hash")
    st.ids["aptos_buyer"] = "0x" + acct["buyer"].address().address.hex()
    tip = node.ledger_version
    deadline = time.monotonic() + 60
    with psycopg.connect(demo.db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT block_number FROM indexer_cursor WHERE chain = %s", (CHAIN,)).fetchone()
            if row and row[0] >= tip:
                break
            time.sleep(0.2)
        else:
            raise TimeoutError(f"the indexer did not reach Aptos version {tip}")
    for wr in w.values():
        wr.client.close()
