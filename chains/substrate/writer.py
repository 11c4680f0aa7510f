"""SubstrateWriter: the Substrate implementation of `chains.base.ChainWriter` (substrate-interface signing).

What the protocol's write intents become on Substrate (the idempotency key travels inside the remark, so a
restarted writer can find its own write on chain):

- ``IoTAnchor.anchor(root, leafCount, windowStart, windowEnd, qualityScore)`` ->
  ``system.remark_with_event(anchor record)``;
- ``CarbonCredit.mint(to, batchId, amount, verificationHash)`` ->
  ``utility.batch_all([assets.mint(batchId, to, amount), system.remark_with_event(mint record)])``;
- ``CarbonCredit.retire(batchId, amount, beneficiary, reason)`` -> ``utility.batch_all([assets.transfer(batchId,
  retirement_account, amount), system.remark_with_event(retire record)])``, signed by the holder;
- ``Escrow.recordOffchainPayment(orderId, paymentRef)`` (an M-Pesa or card payment for an order) ->
  ``contracts.call`` of the followed ink! escrow's ``record_offchain_payment`` message (chains.substrate.ink:
  selector and arguments from the contract's metadata; weight limit from its ``gas_limit`` setting). The call's
  shape is the runtime's own (Weight v1 or v2, with or without ``storage_deposit_limit``). Exactly once: the
  escrow refuses a second payment of an order or a used reference, and the sender's pre-check finds a payment
  the indexer already holds;
- ``<Pallet>.<call>(params)`` with one dict argument -> that pallet call as is (e.g. ``Assets.create``).

Extrinsics are mortal (`era_period` blocks) and carry the sender's own nonce (the oracle's sender owns the
counter, as on EVM). A transaction's fate: found in a block body from its birth block on -> MINED or REVERTED
(`ExtrinsicFailed`, with the DispatchError decoded from the metadata); not found once its era has passed -> it
can never be included (UNKNOWN: safe to sign again); otherwise PENDING.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chains.base import ChainError, ChainWriter, MaybeSent, Rejected, TxRequest, TxState, TxStatus
from chains.rpc import RpcError, RpcTransportError
from chains.substrate import records
from chains.substrate.accounts import RETIREMENT_ACCOUNT
from chains.substrate.ink import ROLE_MESSAGES, FollowedContract
from chains.substrate.runtime import blake2_256


def contract_call_params(fields: list[dict[str, Any]], config: Any, dest: str, data: bytes,
                         gas_limit: tuple[int, int]) -> dict[str, Any]:
    """`Contracts.call` parameters in the shape of this runtime's call (`fields` from its metadata, types resolved
    with `config`): the weight limit is `{ref_time, proof_size}` (Weight v2) or `ref_time` alone (v1), and
    `storage_deposit_limit` (newer pallets) is None: no limit beyond the signer's balance."""
    ref_time, proof_size = gas_limit
    out: dict[str, Any] = {}
    for f in fields:
        name = f["name"]
        if name == "dest":
            out[name] = dest
        elif name == "value":
            out[name] = 0
        elif name == "gas_limit":
            parts = getattr(config.get_decoder_class(f"scale_info::{f['type']}"), "type_mapping", None) or ()
            out[name] = {"ref_time": ref_time, "proof_size": proof_size} if any(
                p[0] == "proof_size" for p in parts) else ref_time
        elif name == "storage_deposit_limit":
            out[name] = None
        elif name == "data":
            out[name] = "0x" + data.hex()
        else:
            raise ChainError(f"Contracts.call of this runtime has a parameter {name!r} carbonledger does not know")
    return out


class SubstrateWriter(ChainWriter):
    """Signs and follows extrinsics of one key on one Substrate chain."""

    def __init__(self, chain: str, url: str, keypair: Any, *, era_period: int = 64,
                 retirement_account: str = RETIREMENT_ACCOUNT,
                 contracts: Mapping[str, FollowedContract] | None = None) -> None:
        from substrateinterface import SubstrateInterface

        self.chain = chain
        self.retirement_account = retirement_account
        # the followed ink! contract of each role the protocol writes to (chains.<chain>.ink_contracts): role -> (0x key, it)
        self.contracts = {c.role: (pk, c) for pk, c in (contracts or {}).items() if c.role in ROLE_MESSAGES}
        self.si = SubstrateInterface(url=url)
        self.keypair = keypair
        self.era_period = era_period
        self._births: dict[str, int] = {}  # tx hash -> head number when signed (its era starts there)
        self._bodies: dict[int, tuple[str, list[str]]] = {}  # block number -> (hash, extrinsic hashes), recent

    @classmethod
    def from_secret(cls, chain: str, url: str, secret: bytes, **kw: Any) -> SubstrateWriter:
        """An sr25519 key from a 32-byte seed (the oracle's configured signing key)."""
        from substrateinterface import Keypair, KeypairType

        return cls(chain, url, Keypair.create_from_seed("0x" + bytes(secret).hex(), crypto_type=KeypairType.SR25519), **kw)

    def has_call(self, pallet: str, call: str) -> bool:
        """Whether the node's current runtime has `pallet.call`."""
        self.si.init_runtime()
        try:
            return self.si.get_metadata_call_function(pallet, call) is not None
        except Exception:  # noqa: BLE001 - substrate-interface raises on an unknown pallet
            return False

    def address(self) -> str:
        return "0x" + self.keypair.public_key.hex()

    def next_nonce(self) -> int:
        return int(self.si.rpc_request("system_accountNextIndex", [self.keypair.ss58_address])["result"])

    def _call(self, request: TxRequest) -> Any:
        si, key = self.si, request.idempotency_key
        extra = {"key": key} if key else {}
        if (request.contract, request.function) == ("IoTAnchor", "anchor"):
            root, leaves, start, end, quality = request.args
            root = root if isinstance(root, str) else "0x" + bytes(root).hex()
            raw = records.encode("anchor", {"root": root, "leafCount": leaves, "windowStart": start,
                                            "windowEnd": end, "qualityScore": quality, **extra})
            return si.compose_call("System", "remark_with_event", {"remark": "0x" + raw.hex()})
        if (request.contract, request.function) == ("CarbonCredit", "mint"):
            to, batch, amount, vhash = request.args
            vhash = vhash if isinstance(vhash, str) else "0x" + bytes(vhash).hex()
            raw = records.encode("mint", {"verificationHash": vhash, **extra})
            return si.compose_call("Utility", "batch_all", {"calls": [
                si.compose_call("Assets", "mint", {"id": batch, "beneficiary": to, "amount": amount}),
                si.compose_call("System", "remark_with_event", {"remark": "0x" + raw.hex()})]})
        if (request.contract, request.function) == ("CarbonCredit", "retire"):
            batch, amount, beneficiary, reason = request.args
            raw = records.encode("retire", {"beneficiary": beneficiary, "reason": reason, **extra})
            return si.compose_call("Utility", "batch_all", {"calls": [
                si.compose_call("Assets", "transfer", {"id": batch, "target": self.retirement_account, "amount": amount}),
                si.compose_call("System", "remark_with_event", {"remark": "0x" + raw.hex()})]})
        if request.function in ROLE_MESSAGES.get(request.contract, {}):
            if request.contract not in self.contracts:
                raise ChainError(f"{request.contract}.{request.function}: chains.{self.chain}.ink_contracts has no "
                                 f"{request.contract} contract")
            pk, contract = self.contracts[request.contract]
            args = [int(a) if i == 0 else a for i, a in enumerate(request.args)]  # the target id comes as text
            try:
                data = contract.call_data(request.function, args)
            except ValueError as exc:
                raise ChainError(f"{request.contract}.{request.function}: {exc}") from None
            si.init_runtime()
            fields = si.get_metadata_call_function("Contracts", "call").value["fields"]
            return si.compose_call("Contracts", "call", contract_call_params(fields, si.runtime_config, pk, data,
                                                                             contract.gas_limit))
        if len(request.args) == 1 and isinstance(request.args[0], Mapping):
            return si.compose_call(request.contract, request.function, dict(request.args[0]))
        raise ChainError(f"no Substrate call for {request.contract}.{request.function}")

    def sign(self, request: TxRequest, nonce: int, fees: Mapping[str, int] | None = None) -> tuple[str, bytes]:
        """A mortal signed extrinsic (tip from fees["tip"]); returns (blake2_256 hash, SCALE bytes)."""
        head = self.si.get_block_number(self.si.get_chain_head())
        ext = self.si.create_signed_extrinsic(call=self._call(request), keypair=self.keypair, nonce=nonce,
                                              era={"period": self.era_period}, tip=int((fees or {}).get("tip", 0)))
        raw = bytes(ext.data.data)
        tx_hash = "0x" + blake2_256(raw).hex()
        self._births[tx_hash] = head
        return tx_hash, raw

    # ------------------------------------------------------------------ what the oracle's sender asks

    def head_number(self) -> int:
        return self.si.get_block_number(self.si.get_chain_head())

    def finalized_number(self) -> int:
        return self.si.get_block_number(self.si.get_chain_finalised_head())

    def block_hash(self, number: int) -> str | None:
        return self.si.get_block_hash(number)

    def mined_nonce(self) -> int:
        """The signer's nonce in the best block's state: nonces below it are consumed on chain."""
        return int(self.si.query("System", "Account", [self.keypair.ss58_address]).value["nonce"])

    def balance(self) -> int:
        return int(self.si.query("System", "Account", [self.keypair.ss58_address]).value["data"]["free"])

    def broadcast_many(self, raws: list[bytes]) -> list[str | Exception]:
        """Each result is the hash, MaybeSent (the pool or a block may have it, or the answer was lost) or Rejected
        (invalid: it is not in the pool and never will be as it is)."""
        out: list[str | Exception] = []
        for raw in raws:
            try:
                out.append(self.broadcast(raw))
            except RpcTransportError as exc:
                out.append(MaybeSent(str(exc)))
            except RpcError as exc:
                low = str(exc).lower()
                # Stale (outdated): its nonce is used, perhaps by this very tx; usurped (priority too low): the pool
                # holds another tx of this nonce, perhaps an earlier attempt. The chain decides: maybe sent.
                maybe = ("outdated", "stale", "priority is too low", "usurped", "already")
                out.append(MaybeSent(str(exc)) if any(m in low for m in maybe) else Rejected(str(exc)))
        return out

    def inclusions(self, births: dict[str, int]) -> dict[str, TxStatus]:
        """Which of the txs (hash -> era birth) are in a block of the best chain, scanning each block from the
        earliest birth to the head once (bodies of recent blocks are kept while their hash stays the same)."""
        from substrateinterface import ExtrinsicReceipt

        if not births:
            return {}
        head, fin = self.head_number(), self.finalized_number()
        found: dict[str, TxStatus] = {}
        for n in range(max(0, min(births.values())), head + 1):
            h = self.block_hash(n)
            cached = self._bodies.get(n)
            if cached is None or cached[0] != h:
                body = self.si.rpc_request("chain_getBlock", [h])["result"]["block"]["extrinsics"]
                cached = self._bodies[n] = (h, ["0x" + blake2_256(bytes.fromhex(x[2:])).hex() for x in body])
            for tx in set(cached[1]) & births.keys():
                receipt = ExtrinsicReceipt(self.si, extrinsic_hash=tx, block_hash=h)
                ok, err = receipt.is_success, receipt.error_message
                found[tx] = TxStatus(TxState.MINED if ok else TxState.REVERTED, tx, n, h, max(0, fin - n + 1),
                                     None if ok else (f"{err.get('name')}: {err.get('docs')}" if isinstance(err, dict)
                                                      else str(err)))
        for n in [n for n in self._bodies if n < head - 4 * self.era_period]:
            del self._bodies[n]
        return found

    def broadcast(self, raw: bytes) -> str:
        tx_hash = "0x" + blake2_256(raw).hex()
        try:
            got = self.si.rpc_request("author_submitExtrinsic", ["0x" + raw.hex()])
        except (ConnectionError, TimeoutError, OSError) as exc:  # the node may have it: maybe sent
            raise RpcTransportError(f"author_submitExtrinsic: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - substrate-interface wraps node errors in its own type
            err = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {"message": str(exc)}
            text = f"{err.get('message', '')} {err.get('data', '')}"
            if "AlreadyImported" in text or "already imported" in text.lower() or "Temporarily Banned" in text:
                return tx_hash  # the pool (or a block) has it already
            raise RpcError(int(err.get("code", -1)), text.strip(), method="author_submitExtrinsic") from None
        return str(got.get("result", tx_hash))

    def birth(self, tx_hash: str) -> int:
        """The head number when `tx_hash` was signed here (its era starts there)."""
        return self._births[tx_hash]

    def remember(self, tx_hash: str, birth: int) -> None:
        """The head number when `tx_hash` was signed (its era's start), for a process that did not sign it: a
        restarted sender restores it from its persisted attempt before asking `status`."""
        self._births[tx_hash] = birth

    def status(self, tx_hash: str) -> TxStatus:
        """MINED/REVERTED once in a block body; UNKNOWN only when its era is over and it is in none of the blocks
        the era allowed (then it can never be included); PENDING otherwise, and always when its birth is unknown."""
        known = tx_hash in self._births
        head = self.head_number()
        birth = self._births[tx_hash] if known else max(0, head - self.era_period)
        found = self.inclusions({tx_hash: birth}).get(tx_hash)
        if found is not None:
            return found
        if known and head >= birth + self.era_period:
            return TxStatus(TxState.UNKNOWN, tx_hash)  # its era is over: it can never be included
        return TxStatus(TxState.PENDING, tx_hash)

    def fee_estimate(self, request: TxRequest) -> int:
        """The fee the runtime would charge for this call (payment_queryInfo's partialFee), in the native unit."""
        info = self.si.get_payment_info(call=self._call(request), keypair=self.keypair)
        return int(info["partial_fee"] if "partial_fee" in info else info["partialFee"])

    def precheck(self, request: TxRequest) -> str | None:
        """None when the call would apply at the head state (a dry run of the signed extrinsic), else why not."""
        ext = self.si.create_signed_extrinsic(call=self._call(request), keypair=self.keypair,
                                              nonce=self.next_nonce(), era={"period": self.era_period})
        try:
            res = bytes.fromhex(self.si.rpc_request("system_dryRun", [str(ext.data)])["result"][2:])
        except Exception as exc:  # noqa: BLE001 - the node refused the dry run itself
            return f"dry run failed: {exc}"
        # ApplyExtrinsicResult = Result<Result<(), DispatchError>, TransactionValidityError>
        if res[:1] == b"\x01":
            return f"invalid transaction: 0x{res[1:].hex()}"
        if res[:2] == b"\x00\x00":
            return None
        error = self.dispatch_error(res[2:])
        if error.startswith("Contracts.OutOfGas") and request.contract in self.contracts:
            error += (f" (raise chains.{self.chain}.ink_contracts.<{request.contract} contract>.gas_limit; "
                      f"now {list(self.contracts[request.contract][1].gas_limit)})")
        return error

    def dispatch_error(self, raw: bytes) -> str:
        """A SCALE DispatchError as "Pallet.Error: docs" (module errors named from the metadata)."""
        from scalecodec.base import ScaleBytes

        md = self.si.metadata
        type_id = next(t["id"] for t in md.portable_registry["types"].value
                       if t["type"].get("path") == ["sp_runtime", "DispatchError"])
        err = self.si.runtime_config.create_scale_object(f"scale_info::{type_id}", data=ScaleBytes(bytearray(raw))).decode()
        if isinstance(err, dict) and "Module" in err:
            index, error = err["Module"]["index"], err["Module"]["error"]
            error = int(error[2:4], 16) if isinstance(error, str) else error
            me = md.get_module_error(module_index=index, error_index=error)
            pallet = next((p.name for p in md.pallets if p["index"] == index), str(index))
            return f"{pallet}.{me.name}: {' '.join(me.docs)}"[:300]
        return str(err)[:300]
