"""The demo's Asset Hub leg: the same credits on a real Substrate runtime (chopsticks), indexed beside the devnet.

Alice is the asset's admin and the anchoring account, Bob the EV owner, Charlie the buyer (Substrate dev keys).
The leg creates the batch's asset, mints the verified grams with a `mint` record, Bob sends the buyer's share,
the buyer retires half of it (`utility.batch_all([assets.transfer to the retirement account, retire record])`) and
Alice anchors the devnet's IoT root by remark; the indexer follows the chain as `assethub`. Skipped, with one line
saying why, where chopsticks cannot run (no Node >= 22 or the npm packages missing).
"""

from __future__ import annotations

import time
from typing import Any

ASSET = 2026
CHAIN = "assethub"


def start(enabled: bool) -> tuple[Any, str | None]:
    """(running chopsticks, None), or (None, why the leg is skipped)."""
    if not enabled:
        return None, "turned off"
    from core.chopsticks import Chopsticks, missing

    why = missing()
    if why:
        return None, why
    chop = Chopsticks(mode="Instant").start()
    from substrateinterface import Keypair

    from chains.substrate.accounts import RETIREMENT_ACCOUNT

    chop.fund({**{Keypair.create_from_uri(f"//{n}").ss58_address: 10**18 for n in ("Alice", "Bob", "Charlie")},
               RETIREMENT_ACCOUNT: 10**12})  # before the first indexed block: storage, no events
    return chop, None


def chain_settings(demo: Any) -> dict[str, Any]:
    """The `assethub` chain for the demo's settings (empty when the leg is skipped)."""
    if demo.chop is None:
        return {}
    from substrateinterface import Keypair

    return {CHAIN: {"family": "substrate", "rpc_url": demo.chop.url, "ws_url": demo.chop.ws_url, "ss58_format": 2,
                    "poll_interval_s": 0.2, "anchor_senders": [Keypair.create_from_uri("//Alice").ss58_address],
                    "assets": {ASSET: {"project_id": "EV-NBO-001", "vintage": 2026,
                                       "methodology": "seed:EV-displacement-120-20", "registry": "carbonledger-demo",
                                       "serial_number": "CLD-EV-NBO-2026-0001"}}}}


def _send(writer: Any, request: Any) -> str:
    """Sign with the account's next nonce, submit, wait for inclusion; the extrinsic hash."""
    from chains.base import TxState

    tx, raw = writer.sign(request, writer.next_nonce())
    writer.broadcast(raw)
    deadline = time.monotonic() + 120
    while (st := writer.status(tx)).state is TxState.PENDING and time.monotonic() < deadline:
        time.sleep(0.2)
    if st.state is not TxState.MINED:
        raise RuntimeError(f"Asset Hub extrinsic {tx} {st.state.value}: {st.error}")
    return tx


def story(demo: Any, st: Any, minted: int, bought: int) -> None:
    """The leg's steps, added to the story with their extrinsic hashes; waits until `assethub` is indexed."""
    import psycopg
    from substrateinterface import Keypair

    from chains.base import TxRequest
    from chains.substrate.writer import SubstrateWriter

    url = demo.chop.ws_url
    alice, bob, charlie = (SubstrateWriter(CHAIN, url, Keypair.create_from_uri(f"//{n}"))
                           for n in ("Alice", "Bob", "Charlie"))
    with psycopg.connect(demo.db_url, autocommit=True) as conn:
        vhash, root, leaves, start, end, quality = conn.execute(
            "SELECT (SELECT args->>3 FROM oracle_intent WHERE contract = 'CarbonCredit' ORDER BY id LIMIT 1), root, "
            "leaf_count, window_start, window_end, quality_score FROM oracle_iot_anchor ORDER BY id LIMIT 1").fetchone()
    tx = _send(alice, TxRequest(CHAIN, "Assets", "create", ({"id": ASSET, "admin": alice.address(), "min_balance": 1},)))
    st.add(f"Asset Hub (a real Substrate runtime on chopsticks): the batch is asset {ASSET}", tx, "Assets.create")
    tx = _send(alice, TxRequest(CHAIN, "CarbonCredit", "mint", (bob.address(), ASSET, minted, vhash)))
    st.add(f"Asset Hub: {minted} g minted to the EV owner, with the verification hash in a mint record", tx,
           "utility.batch_all")
    tx = _send(bob, TxRequest(CHAIN, "Assets", "transfer", ({"id": ASSET, "target": charlie.address(),
                                                              "amount": bought},)))
    st.add(f"Asset Hub: the EV owner sent {bought} g to the buyer", tx, "Assets.transfer")
    tx = _send(charlie, TxRequest(CHAIN, "CarbonCredit", "retire", (ASSET, bought // 2, "Acme Logistics Ltd",
                                                                    "FY2026 scope 3 offset")))
    st.add(f"Asset Hub: the buyer retired {bought // 2} g (to the keyless retirement account, with a retire record)",
           tx, "utility.batch_all")
    tx = _send(alice, TxRequest(CHAIN, "IoTAnchor", "anchor", (root, int(leaves), int(start), int(end), int(quality)),
                                idempotency_key="demo:assethub:anchor"))
    st.add("Asset Hub: the same IoT Merkle root anchored by remark", tx, "system.remark_with_event")
    head = demo.chop.head_number()
    st.ids["substrate_buyer"] = Keypair.create_from_uri("//Charlie", ss58_format=2).ss58_address
    deadline = time.monotonic() + 120
    with psycopg.connect(demo.db_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT block_number FROM indexer_cursor WHERE chain = %s", (CHAIN,)).fetchone()
            if row and row[0] >= head:
                break
            time.sleep(0.2)
        else:
            raise TimeoutError(f"the indexer did not reach Asset Hub block {head}")
    for w in (alice, bob, charlie):
        w.si.close()
