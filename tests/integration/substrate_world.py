"""A credit ledger on a real Asset Hub runtime (chopsticks), driven by signed extrinsics, and its ground truth.

`World` signs with substrate-interface (dev keys //Alice...), puts several extrinsics in one block (Manual block
mode + dev_newBlock) and runs a seeded random scenario of mints, transfers, retirements (holder-signed
`utility.batch_all([assets.transfer, system.remark_with_event(retire record)])`), admin burns, IoT anchors and
noise. `ground_truth` recomputes what the indexer must hold from the raw `System.Events` and block bodies through
substrate-interface's own decoding path (not chains.substrate), comparing accounts as public keys.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from scalecodec.utils.ss58 import ss58_decode

from chains.substrate.accounts import RETIREMENT_ACCOUNT
from chains.substrate.runtime import blake2_256
from tests import seeds

MAPPED = {1001: ("VCS-1001", 2021), 1002: ("GS-1002", 2023)}
UNMAPPED = 1003
UNIT = 10**12


def key_of(account: str) -> str:
    return account.lower() if account.startswith("0x") else "0x" + ss58_decode(account)


def record(kind: str, fields: dict) -> bytes:
    """A carbonledger remark, spelled out here independently of chains.substrate.records."""
    return b"carbonledger:1:" + kind.encode() + b":" + json.dumps(fields, separators=(",", ":")).encode()


@dataclass
class World:
    url: str  # ws URL of chopsticks
    names: tuple[str, ...] = ("Alice", "Bob", "Charlie", "Dave", "Eve")
    si: Any = None
    keys: dict[str, Any] = field(default_factory=dict)
    nonces: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from substrateinterface import Keypair, SubstrateInterface

        self.si = SubstrateInterface(url=self.url)
        self.keys = {n: Keypair.create_from_uri(f"//{n}") for n in self.names}
        self.nonces = {n: 0 for n in self.names}

    def pk(self, name: str) -> str:
        return "0x" + self.keys[name].public_key.hex()

    def fund(self, chop: Any) -> None:
        """Native balances for every dev account and the retirement account (asset accounts need one)."""
        chop.fund({**{self.keys[n].ss58_address: 10**18 for n in self.names}, RETIREMENT_ACCOUNT: 10**12})

    def call(self, module: str, function: str, **params: Any) -> Any:
        return self.si.compose_call(module, function, params)

    def submit(self, who: str, call: Any) -> str:
        """Sign with the sender's own nonce counter and submit without waiting; returns the extrinsic hash."""
        ext = self.si.create_signed_extrinsic(call=call, keypair=self.keys[who], nonce=self.nonces[who],
                                              era={"period": 64})
        self.nonces[who] += 1
        return self.si.rpc_request("author_submitExtrinsic", [str(ext.data)])["result"]

    def batch_all(self, who: str, *calls: Any) -> str:
        return self.submit(who, self.call("Utility", "batch_all", calls=list(calls)))

    def remark(self, raw: bytes) -> Any:
        return self.call("System", "remark_with_event", remark="0x" + raw.hex())

    def close(self) -> None:
        self.si.close()


def run_scenario(world: World, chop: Any, *, rounds: int, seed: int, per_block: int = 4,
                 after_round: Any = None) -> None:
    """Create the assets, mint, then `rounds` blocks of random actions (with the bad inputs the indexer must
    record, not crash on: a malformed anchor record, a retirement of an asset that is no credit batch)."""
    rng = seeds.rng(seed)
    w = world
    holders = ["Bob", "Charlie", "Dave"]
    for asset in (*MAPPED, UNMAPPED):
        w.submit("Alice", w.call("Assets", "create", id=asset, admin=w.pk("Alice"), min_balance=1))
    chop.new_block()
    bal: dict[tuple[str, int], int] = defaultdict(int)
    for asset in MAPPED:
        for h in holders:
            amount = rng.randint(1, 10**6) * UNIT + rng.randint(0, 999)
            vh = "0x" + blake2_256(f"{asset}{h}".encode()).hex()
            w.batch_all("Alice", w.call("Assets", "mint", id=asset, beneficiary=w.pk(h), amount=amount),
                        w.remark(record("mint", {"verificationHash": vh})))
            bal[(h, asset)] += amount
    w.submit("Alice", w.call("Assets", "mint", id=UNMAPPED, beneficiary=w.pk("Bob"), amount=5 * UNIT))
    chop.new_block()
    for r in range(rounds):
        for _ in range(per_block):
            kind = rng.choice(["transfer", "transfer", "retire", "burn", "anchor", "noise"])
            asset = rng.choice(list(MAPPED))
            src = rng.choice(holders)
            have = bal[(src, asset)]
            if kind in ("transfer", "retire", "burn") and have == 0:
                kind = "anchor"
            amount = rng.randint(1, max(1, have // 3)) if have else 0
            if kind == "transfer":
                dst = rng.choice([h for h in holders if h != src])
                w.submit(src, w.call("Assets", "transfer", id=asset, target=w.pk(dst), amount=amount))
                bal[(src, asset)] -= amount
                bal[(dst, asset)] += amount
            elif kind == "retire":
                rec = record("retire", {"beneficiary": f"{src} & family {rng.randint(1, 99)}",
                                        "reason": rng.choice(["EV fleet offset", "Scope 3 2025", "ünïcode ✓"])})
                w.batch_all(src, w.call("Assets", "transfer", id=asset, target=RETIREMENT_ACCOUNT, amount=amount),
                            w.remark(rec))
                bal[(src, asset)] -= amount
            elif kind == "burn":
                w.submit("Alice", w.call("Assets", "burn", id=asset, who=w.pk(src), amount=amount))
                bal[(src, asset)] -= amount
            elif kind == "anchor":
                root = "0x" + blake2_256(f"root{seed}-{r}-{rng.random()}".encode()).hex()
                w.submit("Alice", w.remark(record("anchor", {"root": root, "leafCount": rng.randint(1, 4096),
                                                             "windowStart": 1_700_000_000 + r,
                                                             "windowEnd": 1_700_000_600 + r, "qualityScore": 97})))
            else:  # somebody else's remarks: not ours, ignored
                w.submit("Eve", w.remark(record("anchor", {"root": "0x" + "ee" * 32, "leafCount": 1, "windowStart": 0,
                                                           "windowEnd": 1, "qualityScore": 1})))
                w.submit("Bob", w.remark(b"gm"))
        if r == rounds // 2:  # the bad inputs
            w.submit("Alice", w.remark(b'carbonledger:1:anchor:{"root":"not a hash"}'))
            w.batch_all("Bob", w.call("Assets", "transfer", id=UNMAPPED, target=RETIREMENT_ACCOUNT, amount=UNIT),
                        w.remark(record("retire", {"beneficiary": "x", "reason": "not a credit"})))
        chop.new_block()
        if after_round is not None:
            after_round(r)


@dataclass
class Truth:
    holdings: dict[tuple[str, int], tuple[int, int]]  # (owner key, asset) -> (tradable, retired), non-zero only
    retirements: list[tuple[str, int, int, str, str]]  # (holder, asset, amount, beneficiary, reason)
    anchors: list[str]  # roots
    minted: dict[int, int]
    blocks: int


def ground_truth(world: World, last: int, *, anchor_sender: str, skip: frozenset[int] = frozenset()) -> Truth:
    """What blocks 0..last must index to, from substrate-interface's decoding of the raw events and bodies."""
    si = world.si
    tradable: dict[tuple[str, int], int] = defaultdict(int)
    retired: dict[tuple[str, int], int] = defaultdict(int)
    retirements, anchors, minted = [], [], defaultdict(int)
    retire_to = RETIREMENT_ACCOUNT
    for n in range(1, last + 1):
        if n in skip:
            continue
        h = si.get_block_hash(n)
        events = [e.value for e in si.get_events(h)]
        body = si.get_block(h)["extrinsics"]
        remarks: dict[int, dict[str, bytes]] = defaultdict(dict)  # extrinsic -> hash -> bytes
        for i, ext in enumerate(body):
            for raw in _remarks(ext.value.get("call")):
                remarks[i]["0x" + blake2_256(raw).hex()] = raw
        retire_rec: dict[int, tuple[str, dict]] = {}
        for e in events:
            if (e["module_id"], e["event_id"]) == ("System", "Remarked"):
                i, a = e["extrinsic_idx"], e["attributes"]
                raw = remarks[i].get(a["hash"])
                sender = key_of(a["sender"])
                if raw and raw.startswith(b"carbonledger:1:retire:"):
                    retire_rec.setdefault(i, (sender, json.loads(raw.split(b":", 3)[3])))
                if raw and raw.startswith(b"carbonledger:1:anchor:") and sender == anchor_sender:
                    try:
                        root = json.loads(raw.split(b":", 3)[3])["root"]
                    except (ValueError, KeyError):
                        continue
                    if isinstance(root, str) and len(root) == 66 and root not in anchors:
                        anchors.append(root)
        for e in events:
            if e["module_id"] != "Assets" or e["attributes"] is None:
                continue
            a, name = e["attributes"], e["event_id"]
            asset = a.get("asset_id")
            if asset not in MAPPED:
                continue
            if name == "Issued":
                tradable[(key_of(a["owner"]), asset)] += a["total_supply"]
                minted[asset] += a["total_supply"]
            elif name == "Transferred":
                src, dst = key_of(a["from"]), key_of(a["to"])
                tradable[(src, asset)] -= a["amount"]
                if dst == retire_to:
                    retired[(src, asset)] += a["amount"]
                    sender, rec = retire_rec.get(e["extrinsic_idx"], (None, {}))
                    ok = sender == src
                    retirements.append((src, asset, a["amount"], rec.get("beneficiary", "") if ok else "",
                                        rec.get("reason", "") if ok else ""))
                else:
                    tradable[(dst, asset)] += a["amount"]
            elif name == "Burned" and key_of(a["owner"]) != retire_to:
                tradable[(key_of(a["owner"]), asset)] -= a["balance"]
    holdings = {k: (tradable[k], retired[k]) for k in set(tradable) | set(retired) if tradable[k] or retired[k]}
    return Truth(holdings, sorted(retirements), sorted(anchors), dict(minted), last)


def _remarks(call: Any) -> list[bytes]:
    out = []
    if isinstance(call, dict):
        if call.get("call_module") == "System" and call.get("call_function") == "remark_with_event":
            v = call["call_args"][0]["value"]
            out.append(bytes.fromhex(v[2:]) if v.startswith("0x") else v.encode())
        for arg in call.get("call_args") or ():
            vals = arg.get("value")
            for c in vals if isinstance(vals, list) else [vals]:
                out += _remarks(c)
    return out


def indexed(db_url: str, chain: str) -> Truth:
    """The same figures as the indexer stored them."""
    import psycopg

    from store.engine import libpq_url

    with psycopg.connect(libpq_url(db_url)) as conn:
        holdings = {(o, int(b)): (int(t), int(r)) for o, b, t, r in conn.execute(
            "SELECT owner, batch_id, tradable, retired FROM holding WHERE chain = %s AND valid_to IS NULL "
            "AND (tradable <> 0 OR retired <> 0)", (chain,))}
        retirements = sorted((h, int(b), int(a), ben, rea) for h, b, a, ben, rea in conn.execute(
            "SELECT holder, batch_id, amount, beneficiary, reason FROM retirement WHERE chain = %s", (chain,)))
        anchors = sorted(r for (r,) in conn.execute("SELECT root FROM iot_anchor WHERE chain = %s", (chain,)))
        minted = {int(b): int(m) for b, m in conn.execute(
            "SELECT batch_id, total_minted FROM credit_batch WHERE chain = %s AND valid_to IS NULL", (chain,))}
        block = conn.execute("SELECT block_number FROM indexer_cursor WHERE chain = %s", (chain,)).fetchone()
    return Truth(holdings, retirements, anchors, minted, block[0] if block else -1)
