"""AptosWriter: the Aptos implementation of `chains.base.ChainWriter` (aptos-sdk builds, signs and BCS-encodes).

A write intent names a protocol function ("Marketplace.settleOffchain", "IoTAnchor.anchor", ...) or a package
function directly ("marketplace.list"); contracts/aptos/interface.json says which entry function it is and its
parameter types. The transaction hash is computed here from the signed bytes (so the sender persists it before
the first submit); the sequence number is the sender's (as nonces are on EVM); every transaction carries an
expiration time: once the ledger's time passes it without the transaction committed, it can never commit (the
intent may be signed again). Gas: `max_gas_amount` from a simulation (`/v1/transactions/simulate`), the unit
price from `/v1/estimate_gas_price`.

Submission answers, as the goldens show them: 202 accepted; 400 `vm_error` SEQUENCE_NUMBER_TOO_OLD (the number
is used, perhaps by this very transaction) and `invalid_transaction_update` (the mempool holds another
transaction of this number, perhaps an earlier attempt): maybe sent, the chain decides; 400 `vm_error` otherwise
(invalid signature, expired, bad chain id) and `invalid_input` (bad payload or BCS): rejected; 507 (mempool
full): retry later; transport faults: maybe sent.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chains.aptos import bcs
from chains.aptos.client import BCS_SIGNED, FullnodeClient, NodeError
from chains.aptos.interface import FunctionSpec, Interface, load_interface
from chains.aptos.values import MoveValueError, address, parse, render
from chains.base import ChainError, ChainWriter, MaybeSent, Rejected, TxRequest, TxState, TxStatus
from chains.rpc import RpcTransportError

_ABORT = re.compile(r"Move abort in (0x[0-9a-fA-F]+)::(\w+): (?:(\w+)\((0x[0-9a-fA-F]+)\)|(0x[0-9a-fA-F]+|\d+))(?::\s*(.*))?",
                    re.S)
MAYBE_SENT_VM = ("SEQUENCE_NUMBER_TOO_OLD",)


class MempoolFull(Rejected):
    """507: the node's mempool is full; the same bytes may be submitted again later."""


@dataclass(frozen=True)
class Abort:
    module: str  # "0x…::marketplace"
    name: str  # "E_PAYMENT_REF_USED" ("" when unknown)
    code: int
    doc: str

    def __str__(self) -> str:
        return f"Move abort in {self.module}: {self.name or 'code'}({self.code:#x}){': ' + self.doc if self.doc else ''}"


def decode_abort(vm_status: str, iface: Interface | None = None) -> Abort | None:
    """The Move abort in a vm_status (the node names it from the package's error map; where it only gives the
    code, the name and doc come from the interface file)."""
    m = _ABORT.match(vm_status or "")
    if m is None:
        return None
    mod_addr, mod, name, hexcode, bare, doc = m.groups()
    code = int(hexcode, 16) if hexcode else int(bare, 0)
    if not name and iface is not None:
        name, doc = iface.aborts.get(mod, {}).get(code & 0xFFFF, ("", doc or ""))
    return Abort(f"{mod_addr}::{mod}", name or "", code, (doc or "").strip())


class AptosWriter(ChainWriter):
    """Signs and follows entry-function transactions of one ed25519 key on one Aptos network."""

    def __init__(self, chain: str, client: FullnodeClient | str, account: Any, package: str, *,
                 chain_id: int | None = None, expiration_s: int = 60, gas_margin: float = 1.5,
                 min_gas: int = 2_000, max_gas: int = 2_000_000, interface: Interface | None = None) -> None:
        self.chain = chain
        self.client = client if isinstance(client, FullnodeClient) else FullnodeClient(client)
        self.account = account
        self.package = address(package)
        self.iface = interface or load_interface()
        self._chain_id = chain_id
        self.expiration_s = expiration_s
        self.gas_margin, self.min_gas, self.max_gas = gas_margin, min_gas, max_gas
        self.expirations: dict[str, int] = {}  # tx hash -> expiration (unix s), of transactions signed here

    @classmethod
    def from_secret(cls, chain: str, url: str, secret: bytes, package: str, **kw: Any) -> AptosWriter:
        """An ed25519 key from its 32-byte private key (the oracle's configured signing key)."""
        from aptos_sdk.account import Account
        from aptos_sdk.account_address import AccountAddress
        from aptos_sdk.ed25519 import PrivateKey
        from nacl.signing import SigningKey

        key = PrivateKey(SigningKey(bytes(secret)))  # bytes: no AIP-80 notice printed for a hex string
        return cls(chain, url, Account(AccountAddress.from_key(key.public_key()), key), package, **kw)

    # ------------------------------------------------------------------ identity

    def address(self) -> str:
        return address(str(self.account.address()))

    def chain_id(self) -> int:
        if self._chain_id is None:
            doc = self.client.get("/v1")
            self._chain_id = int(doc["chain_id"])
        return self._chain_id

    def next_nonce(self) -> int:
        """The account's committed sequence number (0 for an account the chain does not know yet)."""
        try:
            return int(self.client.get(f"/v1/accounts/{self.address()}")["sequence_number"])
        except NodeError as exc:
            if exc.status == 404:
                return 0
            raise

    mined_nonce = next_nonce  # committed = final on Aptos

    # ------------------------------------------------------------------ building and signing

    def function(self, request: TxRequest) -> FunctionSpec:
        spec = (self.iface.by_protocol(request.contract, request.function)
                or self.iface.entry_functions.get(f"{request.contract}::{request.function}"))
        if spec is None or spec.name not in self.iface.entry_functions:
            raise ChainError(f"no Aptos entry function for {request.contract}.{request.function}")
        return spec

    def payload(self, request: TxRequest) -> Any:
        from aptos_sdk.transactions import EntryFunction, ModuleId, TransactionPayload
        from aptos_sdk.account_address import AccountAddress

        spec = self.function(request)
        if len(request.args) != len(spec.params):
            raise ChainError(f"{spec.name} takes {len(spec.params)} arguments, the intent has {len(request.args)}")
        try:
            args = [bcs.encode(t, v) for (_, t), v in zip(spec.params, request.args)]
        except (ValueError, TypeError) as exc:
            raise ChainError(f"{spec.name}: {exc}") from None
        mod, fn = spec.name.split("::")
        return TransactionPayload(EntryFunction(ModuleId(AccountAddress.from_str_relaxed(self.package), mod), fn, [], args))

    def raw_transaction(self, request: TxRequest, nonce: int, fees: Mapping[str, int] | None = None) -> Any:
        from aptos_sdk.account_address import AccountAddress
        from aptos_sdk.transactions import RawTransaction

        f = fees or {}
        expiration = int(f.get("expiration") or int(time.time()) + self.expiration_s)
        return RawTransaction(AccountAddress.from_str_relaxed(self.address()), nonce, self.payload(request),
                              int(f.get("max_gas", self.min_gas * 50)), int(f.get("gas_unit_price", 100)),
                              expiration, self.chain_id())

    def sign(self, request: TxRequest, nonce: int, fees: Mapping[str, int] | None = None) -> tuple[str, bytes]:
        """A signed transaction (fees: max_gas, gas_unit_price, expiration); returns (hash, BCS). Nothing is sent."""
        from aptos_sdk.transactions import SignedTransaction

        raw_tx = self.raw_transaction(request, nonce, fees)
        signed = SignedTransaction(raw_tx, raw_tx.sign(self.account.private_key))
        raw = signed.bytes()
        h = bcs.transaction_hash(raw)
        self.expirations[h] = raw_tx.expiration_timestamps_secs
        return h, raw

    def remember(self, tx_hash: str, expiration: int) -> None:
        """The expiration of a transaction signed by another process (a restarted sender restores it)."""
        self.expirations[tx_hash] = expiration

    # ------------------------------------------------------------------ gas and simulation

    def gas_unit_price(self) -> int:
        return int(self.client.get("/v1/estimate_gas_price")["gas_estimate"])

    def simulate(self, request: TxRequest, nonce: int | None = None) -> dict[str, Any]:
        from aptos_sdk.transactions import SignedTransaction

        raw_tx = self.raw_transaction(request, self.next_nonce() if nonce is None else nonce,
                                      {"max_gas": self.max_gas, "gas_unit_price": 0})
        signed = SignedTransaction(raw_tx, raw_tx.sign_simulated(self.account.public_key()))
        _, rows = self.client.request("POST", "/v1/transactions/simulate", body=signed.bytes(), content_type=BCS_SIGNED)
        if not isinstance(rows, list) or len(rows) != 1 or not isinstance(rows[0], dict):
            raise ChainError("simulate did not answer one transaction")
        return rows[0]

    def fees(self, request: TxRequest, nonce: int) -> dict[str, int]:
        """max_gas from a simulation (with a margin), gas_unit_price from the node's estimate, an expiration.

        The simulation runs at the account's committed sequence number, not at `nonce`: a queued write's number is
        ahead of the chain, and a node's prologue refuses it (SEQUENCE_NUMBER_TOO_NEW, no gas figure), which would
        leave the write the minimum gas and an out-of-gas abort."""
        sim = self.simulate(request)
        used = int(sim.get("gas_used") or 0)
        return {"max_gas": max(self.min_gas, min(self.max_gas, int(used * self.gas_margin) + 1)),
                "gas_unit_price": self.gas_unit_price(), "expiration": int(time.time()) + self.expiration_s}

    def precheck(self, request: TxRequest) -> str | None:
        """None when a simulation at the current state succeeds, else the decoded failure."""
        sim = self.simulate(request)
        if sim.get("success") is True:
            return None
        status = str(sim.get("vm_status", ""))
        abort = decode_abort(status, self.iface)
        return str(abort) if abort else status[:300]

    # ------------------------------------------------------------------ views: is the write already on chain?

    def view(self, function: str, args: list[Any]) -> list[Any]:
        spec = self.iface.views[function]
        doc = {"function": f"{self.package}::{function}", "type_arguments": [],
               "arguments": [render(t, v if t != "vector<u8>" else str(v).lower()) for (_, t), v in zip(spec.params, args)]}
        out = self.client.post_json("/v1/view", doc)
        if not isinstance(out, list) or len(out) != len(spec.returns):
            raise ChainError(f"view {function} answered {str(out)[:80]}")
        try:
            return [parse(t, v) for t, v in zip(spec.returns, out)]
        except MoveValueError as exc:
            raise ChainError(f"view {function}: {exc}") from None

    def already_done(self, request: TxRequest) -> bool:
        """The `/v1/view` pre-check before (re-)sending: a settled payment reference, a stored root, a used
        verification hash. False for writes without such a view."""
        checks = {("Marketplace", "settleOffchain"): ("marketplace::payment_ref_used", 3),
                  ("IoTAnchor", "anchor"): ("iot_verification::anchored_at", 0),
                  ("CarbonCredit", "mint"): ("carbon_credit::used_verification", 3)}
        hit = checks.get((request.contract, request.function))
        if hit is None:
            return False
        (v,) = self.view(hit[0], [request.args[hit[1]]])
        return bool(v)

    # ------------------------------------------------------------------ submission and status

    def submit(self, raw: bytes) -> str | Exception:
        """The hash (202), or MaybeSent / Rejected / MempoolFull as the module docstring says."""
        h = bcs.transaction_hash(raw)
        try:
            self.client.request("POST", "/v1/transactions", body=raw, content_type=BCS_SIGNED, retry=False)
            return h
        except RpcTransportError as exc:
            return MaybeSent(str(exc))
        except NodeError as exc:
            if exc.status == 507:
                return MempoolFull(str(exc))
            if exc.error_code == "invalid_transaction_update" or (
                    exc.error_code == "vm_error" and any(m in exc.node_message for m in MAYBE_SENT_VM)):
                return MaybeSent(str(exc))
            return Rejected(str(exc))

    def broadcast_many(self, raws: list[bytes]) -> list[str | Exception]:
        """Submit each, in the order given (the sender orders by sequence number)."""
        return [self.submit(raw) for raw in raws]

    def broadcast(self, raw: bytes) -> str:
        got = self.submit(raw)
        if isinstance(got, Exception):
            raise got
        return got

    def ledger(self) -> tuple[int, int]:
        """(ledger version, ledger time in unix seconds)."""
        doc = self.client.get("/v1")
        return int(doc["ledger_version"]), int(doc["ledger_timestamp"]) // 1_000_000

    def status(self, tx_hash: str) -> TxStatus:
        """MINED / REVERTED (the Move abort decoded) once committed; PENDING while the node has it or its
        expiration has not passed; UNKNOWN once the ledger's time is past its expiration and it is not committed
        (dropped: it can never commit, so the intent may be signed again)."""
        try:
            tx = self.client.get(f"/v1/transactions/by_hash/{tx_hash}")
        except NodeError as exc:
            if exc.status != 404:
                raise
            tx = None
        if isinstance(tx, dict) and tx.get("type") == "user_transaction":
            v = int(tx["version"])
            if tx.get("success") is True:
                return TxStatus(TxState.MINED, tx_hash, v, tx_hash, 1)
            status = str(tx.get("vm_status", ""))
            abort = decode_abort(status, self.iface)
            return TxStatus(TxState.REVERTED, tx_hash, v, tx_hash, 1, str(abort) if abort else status[:300])
        if isinstance(tx, dict):
            return TxStatus(TxState.PENDING, tx_hash)
        exp = self.expirations.get(tx_hash)
        if exp is None:
            return TxStatus(TxState.UNKNOWN, tx_hash)  # not signed here and not known to the node
        if self.ledger()[1] > exp:
            # Past its expiration on the ledger's clock: it can never commit now. Look once more, as it may have
            # committed between the lookup above and the ledger read.
            try:
                self.client.get(f"/v1/transactions/by_hash/{tx_hash}")
            except NodeError as exc:
                if exc.status == 404:
                    return TxStatus(TxState.UNKNOWN, tx_hash)
                raise
            return self.status(tx_hash)
        return TxStatus(TxState.PENDING, tx_hash)

    def balance(self) -> int:
        """Not read on Aptos yet (the metric shows NaN rather than a misleading zero)."""
        raise NotImplementedError("the APT balance is not read by the Aptos writer")
