"""The sender on Aptos: the same outbox protocol as on EVM (oracle/sender.py), Aptos's facts.

Kept from the EVM sender: one sequence-number owner per key (lease, fenced by epoch); sequence number, signed BCS
and hash (computed locally) committed before the first submit; an ambiguous submit is "maybe sent" and the chain
decides; a takeover reloads every in-flight attempt and submits it again (the same bytes: the same hash).

What differs:
- the pre-check before a sequence number is spent is the package's view (`/v1/view`: payment_ref_used,
  anchored_at, used_verification): a write the chain already has is done without a transaction; any other
  failure is found by a simulation (`/v1/transactions/simulate`), whose Move abort is decoded and stored on the
  intent (an abort the package raises for a repeated write, e.g. E_PAYMENT_REF_USED, also means done);
- gas: `max_gas_amount` from that simulation, the unit price from the node's estimate (no fee bumps: Aptos orders
  a sender's transactions by sequence number);
- a transaction carries an expiration (persisted with the attempt, in its `gas` column: the value a restarted
  sender needs to tell "pending" from "dropped"); one found by hash is final (Aptos is final on commit); one not
  found once the ledger's clock has passed its expiration can never commit: if its sequence number is still
  unused it is signed again, same number, new expiration; if the number was used by another transaction the intent
  goes back to pending;
- 507 (mempool full) is refused for now: submitted again on a later round.
"""

from __future__ import annotations

import logging
import time

from chains.base import TxRequest, TxState
from chains.evm.writer import Fees
from oracle import payments
from oracle.sender import Attempt, InFlight, RemembersAttempts, Sender

log = logging.getLogger("carbonledger.oracle.sender")


class AptosSender(RemembersAttempts, Sender):
    """`Sender` over a `chains.aptos.writer.AptosWriter`."""

    def _market_fees(self) -> Fees:
        return Fees(0, 0)  # the unit price is asked per transaction with its simulation (AptosWriter.fees)

    def _sign_new(self, req: TxRequest, nonce: int, estimate: int, market: Fees) -> tuple[str, bytes, int]:
        fees = self.writer.fees(req, nonce)
        h, raw = self.writer.sign(req, nonce, fees)
        return h, raw, fees["expiration"]

    def _prechecks(self, reqs: list[TxRequest]) -> tuple[list[bool], list[tuple[int | None, str | None]]]:
        done, checks = [], []
        for r in reqs:
            on_chain = self.writer.already_done(r)
            err = None if on_chain else self.writer.precheck(r)
            if self._repeat(err):
                on_chain, err = True, None  # the package refuses it as a repeat: the chain has it
            done.append(on_chain)
            checks.append((0, err))
        return done, checks


    def _track(self) -> bool:
        if not self.inflight:
            return False
        mined = self.writer.mined_nonce()
        now = time.monotonic()
        ready, busy = [], False
        for f in list(self.inflight.values()):
            statuses = [self.writer.status(a.tx_hash) for a in f.attempts]
            st = next((s for s in statuses if s.state in (TxState.MINED, TxState.REVERTED)), None)
            if st is not None:
                f.receipt = {"status": st}
                ready.append(f)
                continue
            f.receipt = None
            if f.nonce < mined:  # its number is used, by none of its attempts: another transaction took it
                if f.missing_since is None:
                    f.missing_since = now
                elif now - f.missing_since > 3.0:
                    self._requeue(f, mined)
                    busy = True
            elif all(s.state is TxState.UNKNOWN for s in statuses):
                f.receipt = {"dropped": True}  # every attempt expired unseen: _retry_and_bump signs it again
        if ready:
            self._finalize(ready)
        return busy or bool(ready)

    def _repeat(self, err: str | None) -> bool:
        return err is not None and any(f" {name}(" in err for name in self.writer.iface.already_done)

    def _finalize(self, ready: list[InFlight]) -> None:
        sts = [(f, f.receipt["status"]) for f in ready]  # type: ignore[index]
        self._record([(f, st.state is TxState.MINED, st.error, st.tx_hash, st.block_number, st.block_hash)
                      for f, st in sts])

    def _retry_and_bump(self) -> bool:
        """Submit again what the node refused or may not have; sign again, same number, what expired unseen."""
        now = time.monotonic()
        resend, renew = [], []
        for f in self.inflight.values():
            if f.receipt is not None and f.receipt.get("dropped"):
                renew.append(f)
            elif f.receipt is None and f.rebroadcast_at is not None and now >= f.rebroadcast_at:
                resend.append(f)
        if renew:
            new = []
            for f in renew:
                fees = self.writer.fees(f.request, f.nonce)
                h, raw = self.writer.sign(f.request, f.nonce, fees)
                new.append((f, Attempt(h, raw, Fees(0, 0), fees["expiration"], now)))
                f.receipt = None
            self._persist_attempts(new)
            for f, a in new:
                f.attempts.append(a)
            log.info("expired without commit: signed again with the same sequence number", extra={"count": len(renew)})
        if resend or renew:
            self._broadcast(resend + renew)
        return bool(resend or renew)

