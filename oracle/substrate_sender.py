"""The sender on a Substrate chain: the same outbox protocol as on EVM (oracle/sender.py), Substrate's facts.

Kept from the EVM sender: one nonce owner per key (lease, fenced by epoch); nonce, raw extrinsic and hash
committed before the first broadcast; an ambiguous broadcast is "maybe sent" and the chain decides; a takeover
reloads every in-flight attempt and sends it again (the same bytes: idempotent).

What differs:
- an extrinsic has no receipt lookup by hash: its fate is read from block bodies, from its era's birth block on.
  The birth is persisted with the attempt (in its `gas` column: Substrate has no gas limit) before it is sent, so
  a restarted sender knows the window in which it can appear;
- an extrinsic whose mortal era is over without it in any block can never be included: if its nonce is still
  unused it is signed again with the same nonce and a new era, else the intent goes back to pending;
- confirmed = in a finalized block still on the best chain; `ExtrinsicFailed` = failed with the DispatchError named;
- the pre-check that finds an already-included write (`INDEXED_DONE`): an `IoTAnchor.anchor` whose root the
  indexer already holds for this chain (the idempotency key travels in the remark, so a scan of the chain finds it
  too), or an ink! escrow payment whose order the indexer holds funded with the payment's reference, is done;
  every other write is dry-run (`system_dryRun`) and refused with its decoded error (a reverting contract call
  as `Contracts.ContractReverted`).
"""

from __future__ import annotations

import dataclasses
import logging
import time

from chains.base import ChainError, TxRequest, TxState
from chains.evm.writer import Fees
from oracle.sender import Attempt, InFlight, RemembersAttempts, Sender

log = logging.getLogger("carbonledger.oracle.sender")


# A write the indexer already holds is done (Substrate has no view calls to ask the chain cheaply): what to look for,
# per (contract, function), and its parameters from the request's args after the chain.
INDEXED_DONE = {
    ("IoTAnchor", "anchor"): ("SELECT 1 FROM iot_anchor WHERE chain = %s AND root = %s",
                              lambda a: (str(a[0]).lower(),)),
    # an ink! escrow's order funded with this payment's reference, in any version (it may have moved on since)
    ("Escrow", "recordOffchainPayment"): ("SELECT 1 FROM escrow_order WHERE chain = %s AND order_id = %s AND "
                                          "payment_ref = %s LIMIT 1", lambda a: (int(a[0]), str(a[1]))),
}


class SubstrateSender(RemembersAttempts, Sender):
    """`Sender` over a `chains.substrate.writer.SubstrateWriter`."""

    def _market_fees(self) -> Fees:
        return Fees(0, 0)  # no tip: Substrate orders a sender's extrinsics by nonce; fees are set by the runtime

    def _sign_new(self, req: TxRequest, nonce: int, estimate: int, market: Fees) -> tuple[str, bytes, int]:
        h, raw = self.writer.sign(req, nonce, {"tip": market.priority_fee})
        return h, raw, self.writer.birth(h)

    def _prechecks(self, reqs: list[TxRequest]) -> tuple[list[bool], list[tuple[int | None, str | None]]]:
        done = []
        with self.pool.connection() as conn:
            for r in reqs:
                found = INDEXED_DONE.get((r.contract, r.function))
                done.append(found is not None and conn.execute(found[0], (self.chain, *found[1](r.args))
                                                               ).fetchone() is not None)
        return done, [(0, None if d else self._dry_run(r)) for r, d in zip(reqs, done)]

    def _dry_run(self, req: TxRequest) -> str | None:
        """The writer's pre-check; a request it cannot even build (an order id an ink! u128 cannot carry, no such
        contract configured) is refused with that reason instead of failing every round."""
        try:
            return self.writer.precheck(req)
        except ChainError as exc:
            return str(exc)


    def _track(self) -> bool:
        if not self.inflight:
            return False
        self.head = self.writer.head_number()
        mined = self.writer.mined_nonce()
        births = {a.tx_hash: a.gas for f in self.inflight.values() for a in f.attempts}
        found = self.writer.inclusions(births)
        now = time.monotonic()
        busy = False
        for f in list(self.inflight.values()):
            st = next((found[a.tx_hash] for a in f.attempts if a.tx_hash in found), None)
            f.receipt = None if st is None else {"status": st}
            if st is not None or f.nonce >= mined:
                f.missing_since = None
                continue
            # Its nonce is used but none of its attempts is in a block: another extrinsic took the nonce.
            if f.missing_since is None:
                f.missing_since = now
            elif now - f.missing_since > 3.0:
                self._requeue(f, mined)
                busy = True
        fin = self.writer.finalized_number()
        ready = [f for f in self.inflight.values() if f.receipt is not None
                 and f.receipt["status"].block_number <= fin]
        if ready:
            self._finalize(ready)
        return busy or bool(ready)

    def _finalize(self, ready: list[InFlight]) -> None:
        rows = []
        for f in ready:
            st = f.receipt["status"]  # type: ignore[index]
            if self.writer.block_hash(st.block_number) != st.block_hash:  # its block left the best chain
                log.warning("inclusion lost to a reorg; re-broadcasting", extra={"intent": f.key, "nonce": f.nonce})
                f.receipt, f.rebroadcast_at = None, 0.0
                continue
            rows.append((f, st))
        if rows:
            self._record([(f, st.state is TxState.MINED, st.error, st.tx_hash, st.block_number, st.block_hash)
                          for f, st in rows])

    def _retry_and_bump(self) -> bool:
        """Resend what the node refused or may not have; sign again, same nonce, what can no longer be included."""
        now = time.monotonic()
        head = self.writer.head_number()
        resend, renew = [], []
        for f in self.inflight.values():
            if f.receipt is not None:
                continue
            if all(head >= a.gas + self.writer.era_period for a in f.attempts):
                renew.append(f)  # every era is over and _track found none of them: never includable
            elif f.rebroadcast_at is not None and now >= f.rebroadcast_at:
                resend.append(f)
        if renew:
            if self.writer.mined_nonce() > min(f.nonce for f in renew):
                return False  # the nonce moved meanwhile: _track decides (inclusion, or requeue)
            new = []
            for f in renew:  # the idempotency key goes into the remark again (a takeover rebuilt the request without it)
                f.request = dataclasses.replace(f.request, idempotency_key=f.key)
                h, raw = self.writer.sign(f.request, f.nonce)
                new.append((f, Attempt(h, raw, Fees(0, 0), self.writer.birth(h), now)))
            self._persist_attempts(new)
            for f, a in new:
                f.attempts.append(a)
            log.info("era over without inclusion: signed again with the same nonce", extra={"count": len(renew)})
        if resend or renew:
            self._broadcast(resend + renew)
        return bool(resend or renew)
