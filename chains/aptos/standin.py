"""A stand-in Aptos fullnode for tests, the bench and the demo (no Aptos node, CLI or Move compiler runs here).

It is not a chain: it answers the routes the adapter uses with the shapes, headers and error bodies of aptos-core's
API goldens (fixtures/aptos/rest_api_goldens; tests/unit/test_aptos_standin.py maps every route to the goldens it
follows), accepts BCS `SignedTransaction`s checked with aptos-sdk (signature, chain id, sequence number,
expiration), and for the package's entry functions (contracts/aptos/interface.json) appends committed
transactions whose events follow the package's event file. The package's effects are modelled only as far as its
events and aborts need (balances, listings, used payment references and roots, roles).

A block is `block_metadata_transaction`, the user transactions, `block_epilogue_transaction`, as in the goldens.
`auto_commit` commits each accepted transaction at once in its own block; otherwise `commit()` does. `clock` (unix
seconds) is injectable so expiry can be tested without waiting.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from chains.aptos import bcs
from chains.aptos.client import BCS_SIGNED
from chains.aptos.interface import Interface, load_interface
from chains.aptos.mapping import escrow_address
from chains.aptos.values import address, render

CHAIN_ID = 4  # the goldens' test chain
FEE_EVENT = "0x1::transaction_fee::FeeStatement"
U64_MAX = (1 << 64) - 1


def short(addr: str) -> str:
    """How the API renders an address: 0x + hex without leading zeros ("0x1", "0xa550c18")."""
    return "0x" + (addr[2:].lstrip("0") or "0")


def _err(message: str, code: str, vm: int | None = None) -> dict[str, Any]:
    return {"message": message, "error_code": code, "vm_error_code": vm}


class Abort(Exception):
    def __init__(self, module: str, category: int, reason: int) -> None:
        super().__init__(module, category, reason)
        self.module, self.code = module, (category << 16) | reason


@dataclass
class State:
    """What the package's entry functions read and write."""

    issuers: set[str] = field(default_factory=set)
    oracles: set[str] = field(default_factory=set)
    batches: dict[int, str] = field(default_factory=dict)  # batch id -> metadata address
    balances: dict[tuple[str, int], int] = field(default_factory=dict)
    listings: dict[int, list] = field(default_factory=dict)  # id -> [seller, batch, remaining, price]
    used_refs: set[str] = field(default_factory=set)
    used_verifications: set[str] = field(default_factory=set)
    roots: dict[str, int] = field(default_factory=dict)
    next_batch: int = 1
    next_certificate: int = 1
    next_listing: int = 1
    next_anchor: int = 1

    def copy(self) -> State:
        """A copy to run a transaction on (kept only if it does not abort): containers copied, listings too."""
        out = State(**{k: (v.copy() if isinstance(v, (set, dict)) else v) for k, v in self.__dict__.items()})
        out.listings = {k: list(v) for k, v in self.listings.items()}
        return out


class StandInNode:
    def __init__(self, package: str, *, auto_commit: bool = True, clock: Callable[[], float] = time.time,
                 interface: Interface | None = None, mempool_capacity: int = 1000) -> None:
        self.package = address(package)
        self.escrow = escrow_address(self.package)
        self.iface = interface or load_interface()
        self.auto_commit = auto_commit
        self.clock = clock
        self.mempool_capacity = mempool_capacity
        self.lock = threading.RLock()
        self.state = State(issuers={self.package})
        self.ledger: list[dict[str, Any]] = []
        self.oldest = 0
        self.height = -1
        self.seq: dict[str, int] = {}  # committed sequence number per account
        self.mempool: dict[tuple[str, int], tuple[Any, bytes, str]] = {}  # (sender, seq) -> (signed, raw, hash)
        self.page_limit = 100  # the node clamps `limit` to this
        self.requests: list[tuple[str, str]] = []  # (method, path) served, for tests
        self._block([])
        self.server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ the ledger

    @property
    def ledger_version(self) -> int:
        return len(self.ledger) - 1

    def _now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    def _hash(self, *parts: Any) -> str:
        return "0x" + hashlib.sha3_256(orjson.dumps(parts)).hexdigest()

    def _block(self, users: list[dict[str, Any]]) -> None:
        """Append block metadata, the user transactions and the epilogue (shapes of the transaction goldens)."""
        self.height += 1
        ts = str(self._now_us())
        v = len(self.ledger)
        bid = self._hash("block", self.height)
        self.ledger.append({
            "version": str(v), "hash": self._hash("meta", v), "state_change_hash": self._hash("sc", v),
            "event_root_hash": self._hash("er", v), "state_checkpoint_hash": None, "gas_used": "0", "success": True,
            "vm_status": "Executed successfully", "accumulator_root_hash": self._hash("acc", v), "changes": [],
            "id": bid, "epoch": "1", "round": str(self.height),
            "events": [{"guid": {"creation_number": "3", "account_address": "0x1"}, "sequence_number": str(self.height),
                        "type": "0x1::block::NewBlockEvent",
                        "data": {"epoch": "1", "failed_proposer_indices": [], "hash": bid, "height": str(self.height),
                                 "previous_block_votes_bitvec": "0x00", "proposer": "0x1", "round": str(self.height),
                                 "time_microseconds": ts}}],
            "previous_block_votes_bitvec": [0], "proposer": "0x1", "failed_proposer_indices": [], "timestamp": ts,
            "type": "block_metadata_transaction"})
        for tx in users:
            v = len(self.ledger)
            tx.update({"version": str(v), "accumulator_root_hash": self._hash("acc", v), "timestamp": ts})
            self.ledger.append(tx)
        v = len(self.ledger)
        self.ledger.append({
            "version": str(v), "hash": self._hash("epi", v), "state_change_hash": self._hash("sc", v),
            "event_root_hash": self._hash("er", v), "state_checkpoint_hash": self._hash("ck", v), "gas_used": "0",
            "success": True, "vm_status": "Executed successfully", "accumulator_root_hash": self._hash("acc", v),
            "changes": [], "timestamp": ts, "block_end_info": {"block_gas_limit_reached": False, "block_output_limit_reached": False,
                                                "block_effective_block_gas_units": 0, "block_approx_output_size": 0},
            "type": "block_epilogue_transaction"})

    def commit(self, *, empty: bool = True) -> int:
        """Execute what the mempool can run (per sender, consecutive sequence numbers, not expired) in one block
        (an empty block when there is nothing and `empty`: the ledger's clock moves on, as a real network's does);
        expired transactions are dropped. Returns how many were committed."""
        with self.lock:
            now = self.clock()
            users = []
            for key in sorted(self.mempool, key=lambda k: (k[0], k[1])):
                signed, raw, h = self.mempool[key]
                if signed.transaction.expiration_timestamps_secs <= now:
                    del self.mempool[key]  # dropped: it can never be included
            progress = True
            while progress:
                progress = False
                for (sender, seq) in sorted(self.mempool):
                    if seq == self.seq.get(sender, 0):
                        signed, raw, h = self.mempool.pop((sender, seq))
                        users.append(self._execute(signed, h))
                        self.seq[sender] = seq + 1
                        progress = True
            if users or empty:
                self._block(users)
            return len(users)

    def prune(self, oldest: int) -> None:
        with self.lock:
            self.oldest = oldest

    def grant(self, role: str, who: str) -> None:
        """Set-up shortcut (the admin's grant_issuer/grant_oracle transactions, without the round trip)."""
        with self.lock:
            (self.state.issuers if role == "issuer" else self.state.oracles).add(address(who))

    # ------------------------------------------------------------------ transactions

    def _entry(self, signed: Any) -> tuple[str, Any, list[Any]]:
        """(module::function, spec, decoded args) of an entry-function payload of the package; ValueError else."""
        from aptos_sdk.transactions import EntryFunction

        payload = signed.transaction.payload.value
        if not isinstance(payload, EntryFunction):
            raise ValueError("only entry-function payloads are supported by the stand-in")
        mod = "0x" + payload.module.address.address.hex()
        name = f"{payload.module.name}::{payload.function}"
        spec = self.iface.entry_functions.get(name) if mod == self.package else None
        if spec is None:
            raise ValueError(f"could not find entry function by {short(mod)}::{name}")
        if len(payload.args) != len(spec.params):
            raise ValueError(f"expected {len(spec.params)} arguments, but got {len(payload.args)}")
        return name, spec, [bcs.decode(t, raw) for (_, t), raw in zip(spec.params, payload.args)]

    def _run(self, st: State, sender: str, name: str, args: list[Any]) -> list[tuple[str, dict[str, Any]]]:
        """The package's effects on `st` and its events [(module::Struct, fields)]; raises Abort."""
        def need(cond: bool, module: str, category: int, reason: int) -> None:
            if not cond:
                raise Abort(module, category, reason)

        def move(src: str, dst: str, batch: int, amount: int) -> None:
            need(batch in st.batches, "carbon_credit", 6, 4)
            have = st.balances.get((src, batch), 0)
            if have < amount:
                raise Abort("0x1::fungible_asset", 1, 4)  # EINSUFFICIENT_BALANCE, as the framework aborts
            st.balances[(src, batch)] = have - amount
            st.balances[(dst, batch)] = st.balances.get((dst, batch), 0) + amount

        cc, mk, iot = "carbon_credit", "marketplace", "iot_verification"
        if name in ("carbon_credit::grant_issuer", "carbon_credit::grant_oracle"):
            need(sender == self.package, cc, 5, 1)
            (st.issuers if name.endswith("issuer") else st.oracles).add(address(args[0]))
            return []
        if name == "carbon_credit::create_batch":
            need(sender in st.issuers, cc, 5, 2)
            need(len(args[5]) == 66, cc, 1, 7)
            bid = st.next_batch
            st.next_batch += 1
            st.batches[bid] = self._hash("metadata", bid)
            return [("carbon_credit::BatchCreated", dict(zip(("project_id", "vintage", "methodology", "registry",
                                                                "serial_number", "metadata_hash"), args),
                                                           batch_id=bid, metadata=st.batches[bid]))]
        if name == "carbon_credit::mint":
            to, bid, amount, vh = args
            need(sender in st.issuers, cc, 5, 2)
            need(amount > 0, cc, 1, 5)
            need(vh not in st.used_verifications, cc, 8, 6)
            need(bid in st.batches, cc, 6, 4)
            st.used_verifications.add(vh)
            st.balances[(address(to), bid)] = st.balances.get((address(to), bid), 0) + amount
            return [("carbon_credit::Minted", {"batch_id": bid, "to": to, "amount": amount, "verification_hash": vh})]
        if name == "carbon_credit::transfer":
            to, bid, amount = args
            need(amount > 0, cc, 1, 5)
            move(sender, address(to), bid, amount)
            return [("carbon_credit::Transferred", {"batch_id": bid, "from": sender, "to": to, "amount": amount})]
        if name == "carbon_credit::retire":
            bid, amount, beneficiary, reason = args
            need(amount > 0, cc, 1, 5)
            move(sender, "burned", bid, amount)
            cert = st.next_certificate
            st.next_certificate += 1
            return [("carbon_credit::Retired", {"certificate_id": cert, "holder": sender, "batch_id": bid,
                                                "amount": amount, "beneficiary": beneficiary, "reason": reason})]
        if name == "marketplace::list":
            bid, amount, price = args
            need(amount > 0, mk, 1, 5)
            move(sender, self.escrow, bid, amount)
            lid = st.next_listing
            st.next_listing += 1
            st.listings[lid] = [sender, bid, amount, price]
            return [("marketplace::Listed", {"listing_id": lid, "seller": sender, "batch_id": bid, "amount": amount,
                                             "price_per_unit": price})]
        if name == "marketplace::cancel":
            (lid,) = args
            need(lid in st.listings, mk, 6, 1)
            seller, bid, remaining, _ = st.listings[lid]
            need(seller == sender, mk, 5, 2)
            del st.listings[lid]
            move(self.escrow, seller, bid, remaining)
            return [("marketplace::Cancelled", {"listing_id": lid, "seller": seller, "batch_id": bid, "amount": remaining})]
        if name in ("marketplace::buy", "marketplace::settle_offchain"):
            if name == "marketplace::buy":
                (lid, amount), buyer, ref = args, sender, ""
            else:
                lid, buyer, amount, ref = args
                need(sender in st.oracles, cc, 5, 3)
                need(ref != "", mk, 1, 6)
                need(ref not in st.used_refs, mk, 8, 3)
            need(amount > 0, mk, 1, 5)
            need(lid in st.listings, mk, 6, 1)
            lst = st.listings[lid]
            need(lst[2] >= amount, mk, 1, 4)
            if ref:
                st.used_refs.add(ref)
            lst[2] -= amount
            move(self.escrow, address(buyer), lst[1], amount)
            return [("marketplace::Sold", {"listing_id": lid, "buyer": buyer, "seller": lst[0], "batch_id": lst[1],
                                           "amount": amount, "price_per_unit": lst[3], "payment_ref": ref})]
        if name == "iot_verification::store_data_hash":
            root = args[0]
            need(sender in st.oracles, cc, 5, 3)
            need(len(root) == 66, iot, 1, 2)
            need(root not in st.roots, iot, 8, 1)
            st.roots[root] = int(self.clock())
            aid = st.next_anchor
            st.next_anchor += 1
            return [("iot_verification::Anchored", dict(zip(("root", "leaf_count", "window_start", "window_end",
                                                               "quality_score"), args), anchor_id=aid))]
        raise ValueError(f"no model of {name}")

    def _abort_status(self, a: Abort) -> str:
        """vm_status of a Move abort, rendered as in the goldens ("Move abort in 0x1::fungible_asset: NAME(0x..): doc")."""
        if a.module.startswith("0x1::"):
            return ("Move abort in 0x1::fungible_asset: EINSUFFICIENT_BALANCE(0x10004): Insufficient balance to "
                    "withdraw or transfer.")
        name, doc = self.iface.aborts[a.module][a.code & 0xFFFF]
        return f"Move abort in {short(self.package)}::{a.module}: {name}({a.code:#x}): {doc}"

    def _user_json(self, signed: Any, h: str) -> dict[str, Any]:
        """The pending shape of the submit goldens (test_post_bcs_format_transaction)."""
        t = signed.transaction
        payload: dict[str, Any]
        try:
            name, spec, args = self._entry(signed)
            payload = {"function": f"{short(self.package)}::{name}", "type_arguments": [],
                       "arguments": [render(ty, v) for (_, ty), v in zip(spec.params, args)],
                       "type": "entry_function_payload"}
        except ValueError:
            payload = {"function": str(t.payload.value), "type_arguments": [], "arguments": [],
                       "type": "entry_function_payload"}
        auth = signed.authenticator.authenticator
        return {"hash": h, "sender": short("0x" + t.sender.address.hex()), "sequence_number": str(t.sequence_number),
                "max_gas_amount": str(t.max_gas_amount), "gas_unit_price": str(t.gas_unit_price),
                "expiration_timestamp_secs": str(t.expiration_timestamps_secs), "payload": payload,
                "signature": {"public_key": "0x" + auth.public_key.key.encode().hex(),
                              "signature": "0x" + auth.signature.signature.hex(), "type": "ed25519_signature"},
                "replay_protection_nonce": None}

    def _execute(self, signed: Any, h: str, state: State | None = None) -> dict[str, Any]:
        """The committed (or simulated) user transaction, shaped as the transaction goldens."""
        st = state if state is not None else self.state
        sender = address("0x" + signed.transaction.sender.address.hex())
        trial = st.copy()
        events: list[dict[str, Any]] = []
        try:
            name, spec, args = self._entry(signed)
            for i, (ev, data) in enumerate(self._run(trial, sender, name, args)):
                fields = self.iface.events[ev].fields
                events.append({"guid": {"creation_number": "0", "account_address": "0x0"}, "sequence_number": "0",
                               "type": f"{short(self.package)}::{ev}",
                               "data": {n: render(t, data[n]) for n, t in fields}})
            st.__dict__.update(trial.__dict__)
            ok, status = True, "Executed successfully"
        except Abort as a:
            ok, status, events = False, self._abort_status(a), []
        except ValueError as exc:
            ok, status, events = False, f"LINKER_ERROR\nExecution failed with message: {exc}", []
        gas = 8 + 3 * len(events)
        events.append({"guid": {"creation_number": "0", "account_address": "0x0"}, "sequence_number": "0",
                       "type": FEE_EVENT, "data": {"execution_gas_units": str(gas - 3), "io_gas_units": "3",
                                                   "storage_fee_octas": "0", "storage_fee_refund_octas": "0",
                                                   "total_charge_gas_units": str(gas)}})
        return {"version": "0", "hash": h, "state_change_hash": self._hash("sc", h), "event_root_hash": self._hash("er", h),
                "state_checkpoint_hash": None, "gas_used": str(gas), "success": ok, "vm_status": status,
                "accumulator_root_hash": "", "changes": [], **self._user_json(signed, h), "events": events,
                "timestamp": "0", "type": "user_transaction"}

    def _decode_signed(self, raw: bytes) -> Any:
        from aptos_sdk.bcs import Deserializer
        from aptos_sdk.transactions import SignedTransaction

        de = Deserializer(raw)
        signed = SignedTransaction.deserialize(de)
        if de.remaining():
            raise ValueError(f"{de.remaining()} trailing bytes")
        return signed

    def submit(self, raw: bytes) -> tuple[int, Any]:
        """POST /v1/transactions (BCS): 202 with the pending transaction, or the goldens' error bodies."""
        try:
            signed = self._decode_signed(raw)
        except Exception as exc:  # noqa: BLE001 - any malformed input
            return 400, _err(f"Failed to deserialize input into SignedTransaction: {exc}", "invalid_input")
        h = bcs.transaction_hash(raw)
        t = signed.transaction
        sender = address("0x" + t.sender.address.hex())
        with self.lock:
            if not signed.verify():
                return 400, _err("Invalid transaction: Type: Validation Code: INVALID_SIGNATURE", "vm_error", 1)
            if t.chain_id != CHAIN_ID:
                return 400, _err("Invalid transaction: Type: Validation Code: BAD_CHAIN_ID", "vm_error", 7)
            if t.expiration_timestamps_secs <= self.clock():
                return 400, _err("Invalid transaction: Type: Validation Code: TRANSACTION_EXPIRED", "vm_error", 6)
            if t.sequence_number < self.seq.get(sender, 0):
                return 400, _err("Invalid transaction: Type: Validation Code: SEQUENCE_NUMBER_TOO_OLD", "vm_error", 3)
            held = self.mempool.get((sender, t.sequence_number))
            if held is not None and held[2] != h:
                return 400, _err("Transaction already in mempool with a different payload", "invalid_transaction_update")
            if held is None and len(self.mempool) >= self.mempool_capacity:
                return 507, _err(f"Mempool is full. Mempool size: {len(self.mempool)}, Capacity: "
                                 f"{self.mempool_capacity}", "mempool_is_full")
            self.mempool[(sender, t.sequence_number)] = (signed, raw, h)
            pending = self._user_json(signed, h)
            if self.auto_commit:
                self.commit(empty=False)
        return 202, pending

    def simulate(self, raw: bytes) -> tuple[int, Any]:
        try:
            signed = self._decode_signed(raw)
        except Exception as exc:  # noqa: BLE001
            return 400, _err(f"Failed to deserialize input into SignedTransaction: {exc}", "invalid_input")
        if signed.verify():
            return 400, _err("Simulated transactions must not have a valid signature", "invalid_input")
        with self.lock:
            tx = self._execute(signed, "0x" + "0" * 64, self.state.copy())
        tx.update(version=str(self.ledger_version), hash="", timestamp=str(self._now_us()))
        del tx["type"]  # the simulate goldens carry no "type"
        return 200, [tx]

    def view(self, doc: Any) -> tuple[int, Any]:
        fn = doc.get("function") if isinstance(doc, dict) else None
        args = doc.get("arguments") if isinstance(doc, dict) else None
        name = None
        if isinstance(fn, str) and fn.count("::") == 2:  # the node parses the address: short or full form
            mod_addr, _, name = fn.partition("::")
            try:
                name = name if address(mod_addr) == self.package else None
            except ValueError:
                name = None
        spec = self.iface.views.get(name or "")
        if spec is None or not isinstance(args, list) or len(args) != len(spec.params):
            return 400, _err(f"could not find view function by {fn}", "invalid_input")
        st = self.state
        with self.lock:
            if name == "marketplace::payment_ref_used":
                out: list[Any] = [args[0] in st.used_refs]
            elif name == "iot_verification::anchored_at":
                out = [str(st.roots.get(str(args[0]).lower(), 0))]
            elif name == "carbon_credit::used_verification":
                out = [str(args[0]).lower() in st.used_verifications]
            elif name == "carbon_credit::balance":
                out = [str(st.balances.get((address(args[0]), int(args[1])), 0))]
            elif name == "marketplace::escrow_address":
                out = [short(self.escrow)]
            else:
                return 400, _err(f"could not find view function by {fn}", "invalid_input")
        return 200, out

    # ------------------------------------------------------------------ HTTP

    def headers(self) -> dict[str, str]:
        last = self.ledger[-1]
        return {"X-Aptos-Chain-Id": str(CHAIN_ID), "X-Aptos-Ledger-Version": str(self.ledger_version),
                "X-Aptos-Ledger-Oldest-Version": str(self.oldest), "X-Aptos-Ledger-TimestampUsec": last["timestamp"],
                "X-Aptos-Epoch": "1", "X-Aptos-Block-Height": str(self.height), "X-Aptos-Oldest-Block-Height": "0"}

    def index(self) -> dict[str, Any]:
        return {"chain_id": CHAIN_ID, "epoch": "1", "ledger_version": str(self.ledger_version),
                "oldest_ledger_version": str(self.oldest), "ledger_timestamp": self.ledger[-1]["timestamp"],
                "node_role": "full_node", "oldest_block_height": "0", "block_height": str(self.height), "git_hash": ""}

    def transactions(self, q: dict[str, list[str]]) -> tuple[int, Any]:
        start_s, limit_s = (q.get("start") or [None])[0], (q.get("limit") or ["25"])[0]
        if start_s is not None and not (start_s.isdigit() and int(start_s) <= U64_MAX):
            return 400, _err(f'failed to parse parameter `start`: failed to parse "string(U64)": Parsing u64 string '
                             f'"{start_s[:40]}" failed, caused by error: invalid digit found in string (occurred '
                             'while parsing "optional<string(U64)>")', "web_framework_error")
        if not (limit_s.isdigit() and int(limit_s) < 1 << 16):
            return 400, _err('failed to parse parameter `limit`: failed to parse "integer(uint16)": invalid digit '
                             'found in string (occurred while parsing "optional<integer(uint16)>")',
                             "web_framework_error")
        limit = int(limit_s)
        if limit == 0:
            return 400, _err(f"Given limit value ({limit}) must not be zero", "invalid_input")
        limit = min(limit, self.page_limit)
        tip = self.ledger_version
        start = int(start_s) if start_s is not None else max(self.oldest, tip + 1 - limit)
        if start > tip:
            return 400, _err(f"Given start value ({start}) is higher than the current ledger version, it must be "
                             f"< {tip + 1}", "invalid_input")
        if start < self.oldest:
            return 410, _err(f"Ledger version({start}) has been pruned", "version_pruned")
        return 200, self.ledger[start: start + limit]

    def by_hash(self, h: str) -> tuple[int, Any]:
        if not (len(h) == 66 and h[:2] == "0x" and all(c in "0123456789abcdefABCDEF" for c in h[2:])):
            return 400, _err('failed to parse path `txn_hash`: failed to parse "string(HashValue)": unable to parse '
                             "HashValue", "web_framework_error")
        h = h.lower()
        for tx in reversed(self.ledger):
            if tx["hash"] == h:
                return 200, tx
        for signed, _raw, mh in self.mempool.values():
            if mh == h:
                return 200, {**self._user_json(signed, h), "type": "pending_transaction"}
        return 404, _err(f"Transaction not found by Transaction hash({h})", "transaction_not_found")

    def account(self, who: str) -> tuple[int, Any]:
        try:
            a = address(who)
        except ValueError:
            return 400, _err(f"failed to parse path `address`: failed to parse \"string(Address)\": {who[:80]}",
                             "web_framework_error")
        if a not in self.seq and a != self.package and not any(s == a for s, _ in self.mempool):
            return 404, _err(f"Account not found by Address({short(a)}) and Ledger version({self.ledger_version})",
                             "account_not_found")
        return 200, {"sequence_number": str(self.seq.get(a, 0)), "authentication_key": a}

    def handle(self, method: str, target: str, ctype: str, body: bytes) -> tuple[int, Any]:
        u = urlsplit(target)
        path = u.path.rstrip("/")
        with self.lock:
            self.requests.append((method, path))
            if method == "GET" and path == "/v1":
                return 200, self.index()
            if method == "GET" and path == "/v1/transactions":
                return self.transactions(parse_qs(u.query))
            if method == "GET" and path.startswith("/v1/transactions/by_hash/"):
                return self.by_hash(path.rsplit("/", 1)[1])
            if method == "GET" and path.startswith("/v1/accounts/"):
                return self.account(path.split("/")[3])
            if method == "GET" and path == "/v1/estimate_gas_price":
                return 200, {"deprioritized_gas_estimate": 100, "gas_estimate": 100, "prioritized_gas_estimate": 150}
        if method == "POST" and path in ("/v1/transactions", "/v1/transactions/simulate"):
            if ctype != BCS_SIGNED:
                return 415, _err(f"the `Content-Type` requested by the client is not supported: {ctype or 'none'}",
                                 "web_framework_error")
            return self.submit(body) if path == "/v1/transactions" else self.simulate(body)
        if method == "POST" and path == "/v1/view":
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                return 400, _err("parse request payload error: expected value at line 1 column 1", "web_framework_error")
            return self.view(doc)
        return 404, _err(f"not found: {method} {path}", "web_framework_error")

    def start(self) -> str:
        node = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def _do(self, method: str) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(n, 1 << 20)) if n else b""
                status, doc = node.handle(method, self.path, (self.headers.get("Content-Type") or "").split(";")[0],
                                          body)
                out = orjson.dumps(doc)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                with node.lock:
                    for k, v in node.headers().items():
                        self.send_header(k, v)
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self) -> None:  # noqa: N802
                self._do("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._do("POST")

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="aptos-standin", daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
