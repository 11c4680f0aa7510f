"""The sender: claims pending intents, signs them with pipelined nonces, broadcasts, follows receipts.

Exactly-once rules enforced here (DESIGN.md invariant 6):
- only the lease holder signs (oracle/lease.py); a stale holder is fenced out by epoch;
- nonce, raw tx and hash are committed before the first broadcast, so a crash never loses a sent tx;
- a broadcast error that may hide success (already known, nonce too low, timeout) is "maybe sent": the intent
  stays in flight and the chain decides (receipt of any attempt hash once the nonce is consumed);
- before a nonce is spent, the contract's own duplicate-guard view (paymentRefUsed, settled, anchoredAt,
  usedVerification; eth_call) skips writes the chain already has, and `eth_estimateGas` catches any other revert
  (decoded custom error); the contracts' duplicate checks are the third layer;
- an intent turns failed (refused by the pre-check or reverted when mined) in the same transaction that flags the
  provider payment behind it, if any (`oracle.payments.writes_failed`: refund due, never kept silently).
Receipts are learnt per round from one batched (head, mined nonce) query: only attempts whose nonce the chain
has consumed are looked up, in batches.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psycopg
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from chains.base import TxRequest
from chains.evm.rpc import RpcError, RpcTransportError
from chains.evm.writer import EvmWriter, Fees, MaybeSent, Rejected
from oracle import payments
from oracle.lease import LeaseLost, NonceLease
from oracle.outbox import ALREADY_DONE, DONE_VIEWS, NOTIFY_CHANNEL

log = logging.getLogger("carbonledger.oracle.sender")

_db_retry = retry(retry=retry_if_exception_type(psycopg.OperationalError), stop=stop_after_attempt(4),
                  wait=wait_exponential(multiplier=0.05, max=1), reraise=True)

_INSERT_ATTEMPT = ("INSERT INTO oracle_attempt (intent_id, chain, signer, nonce, tx_hash, raw_tx, max_fee, priority_fee, gas,"
                   " epoch) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")


def _many(cur: psycopg.Cursor, sql: str, rows: list) -> None:
    """executemany, except for one row: psycopg runs executemany in pipeline mode, whose set-up and sync cost more
    client CPU than the statement itself when a round writes one payment's rows (the common case below a flood)."""
    if len(rows) == 1:
        cur.execute(sql, rows[0])
    elif rows:
        cur.executemany(sql, rows)


@dataclass
class Attempt:
    tx_hash: str
    raw: bytes
    fees: Fees
    gas: int
    at: float  # monotonic time of signing/broadcast


@dataclass
class InFlight:
    intent_id: int
    key: str
    request: TxRequest
    nonce: int
    attempts: list[Attempt] = field(default_factory=list)
    rebroadcast_at: float | None = None  # set when the last broadcast was refused or timed out
    underpriced: bool = False  # the node refused the fees: re-price now rather than after fee_bump_after_s
    stalled: bool = False  # the node does not count it as pending (lost, or held as not executable): re-price now
    receipt: dict[str, Any] | None = None
    missing_since: float | None = None

    @property
    def last(self) -> Attempt:
        return self.attempts[-1]


class SenderStatus(NamedTuple):
    """What /health, /ready and /metrics show of the sender (from another process: oracle.sender_process)."""

    last_round: float  # time.monotonic() when its last round began (system-wide on Linux: comparable across processes)
    nonce_owner: bool  # holds the signing key's nonce lease
    in_flight: int  # transactions broadcast and not yet final


class Sender:
    """Runs in the oracle's sender process (oracle.sender_process): `run()` until `stop` is set; `run_once()` does one
    round (tests, bench)."""

    def __init__(self, url: str, pool: Any, writer: EvmWriter, settings: Any, owner: str,
                 stop: threading.Event | None = None) -> None:
        self.pool, self.writer, self.s = pool, writer, settings
        self.chain = writer.chain
        self.signer = writer.address().lower()
        self.stop = stop or threading.Event()
        self.lease = NonceLease(url, f"nonce:{self.chain}:{self.signer}", owner)
        self.inflight: dict[int, InFlight] = {}  # by nonce
        self.head = -1
        self._recovered = False
        self._fees: tuple[float, Fees] | None = None
        self.last_round = time.monotonic()
        self._track_due = 0.0  # receipts and retries are looked at no more often than poll_interval_s
        self._gap_since: float | None = None  # since when the node's pending nonce has been below ours
        self._counts_pending = False  # has the node ever counted a transaction of ours as pending (see _watch_gap)

    # ---- loop -------------------------------------------------------------------------------------------
    def run(self, publish: Callable[[SenderStatus], None] | None = None) -> None:
        """Rounds until `stop` is set; `publish` gets the status after each one (the parent process shows it)."""
        while not self.stop.is_set():
            busy = False
            try:
                now = time.monotonic()
                track = now >= self._track_due
                if track:
                    # Paced, so a new intent is not kept waiting behind receipt and retry work (a round did both
                    # every time: an intent arriving mid-round waited for all of it, ~60 ms p50 at 100 payments/s).
                    self._track_due = now + self.s.poll_interval_s
                busy = self.run_once(track)
            except LeaseLost as exc:
                log.warning("nonce lease lost; pausing sends", extra={"reason": str(exc)})
                self._drop()
            except (RpcTransportError, RpcError, psycopg.Error, OSError) as exc:
                log.warning("sender round failed; retrying", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
                if isinstance(exc, psycopg.Error):
                    # A commit may have failed ambiguously (applied on the server, error on the client): memory can
                    # lag the database, so reload in-flight state from it before assigning another nonce.
                    self._recovered = False
                self.stop.wait(0.5)
            except Exception:  # noqa: BLE001 - the sender must outlive a bug in one round; the log says which
                log.exception("sender round crashed; retrying")
                self.stop.wait(1.0)
            if publish is not None:
                publish(self.status())
            if not busy and not self.stop.is_set():
                if self.lease.held:  # a new intent's NOTIFY ends the wait at once; receipts wait for their turn
                    due = self._track_due - time.monotonic() if self.inflight else self.s.poll_interval_s
                    self.lease.wait_notify(NOTIFY_CHANNEL, min(self.s.poll_interval_s, max(due, 0.0)))
                else:
                    self.stop.wait(0.2)
        held = self.lease.held
        self._drop()
        if held:
            log.info("sender stopped; nonce lease released", extra={"lease": self.lease.name})
        if publish is not None:
            publish(self.status())

    def status(self) -> SenderStatus:
        return SenderStatus(self.last_round, self.lease.held, len(self.inflight))

    def _drop(self) -> None:
        self.lease.release()
        self.inflight.clear()
        self._recovered = False

    def run_once(self, track: bool = True) -> bool:
        """One round; True when it did work (so the loop goes again without waiting). `track`: also look at
        receipts, finality and retries (`run` does that at most every poll_interval_s, new intents at once)."""
        self.last_round = time.monotonic()
        if not self.lease.held:
            self._recovered = False
            if not self.lease.try_acquire():
                return False
            self.lease.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")  # type: ignore[union-attr]  # wake on new intents
        if not self._recovered:  # retried every round until it succeeds: no nonce is used before it has
            self._recover()
            self._recovered = True
        self.lease.heartbeat(self.s.lease_heartbeat_s)
        busy = self._fill()  # new work first: it is what webhook->broadcast latency waits for
        if track:
            busy |= self._track()
            busy |= self._retry_and_bump()
        return busy

    @contextmanager
    def _fenced(self) -> Iterator[psycopg.Cursor]:
        """A cursor in a pool transaction that first checks this sender still holds the lease (LeaseLost if not)."""
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            self.lease.fence(cur)
            yield cur

    # ---- takeover ---------------------------------------------------------------------------------------
    def _recover(self) -> None:
        """A new owner: sync the nonce counter with the chain, reload every in-flight intent, resend its latest tx."""
        pending_nonce = self.writer.next_nonce()
        with self._fenced() as cur:
            cur.execute(
                "INSERT INTO oracle_nonce (chain, signer, next_nonce) VALUES (%s, %s, %s) ON CONFLICT (chain, signer)"
                " DO UPDATE SET next_nonce = GREATEST(oracle_nonce.next_nonce, excluded.next_nonce)",
                (self.chain, self.signer, pending_nonce))
            rows = cur.execute(
                "SELECT i.id, i.idempotency_key, i.contract, i.function, i.args, a.nonce, a.tx_hash, a.raw_tx, a.max_fee,"
                " a.priority_fee, a.gas FROM oracle_intent i JOIN oracle_attempt a ON a.intent_id = i.id"
                " WHERE i.chain = %s AND i.signer = %s AND i.status IN ('signed', 'sent') AND a.nonce = i.nonce"
                " ORDER BY a.id", (self.chain, self.signer)).fetchall()
        self.inflight.clear()
        for iid, key, contract, fn, args, nonce, h, raw, mf, pf, gas in rows:
            fl = self.inflight.get(nonce)
            if fl is None:
                fl = self.inflight[nonce] = InFlight(iid, key, TxRequest(self.chain, contract, fn, tuple(args)), nonce)
            fl.attempts.append(Attempt(h, bytes(raw), Fees(int(mf), int(pf)), int(gas), time.monotonic()))
        if self.inflight:
            log.info("resending in-flight transactions after takeover", extra={"count": len(self.inflight)})
            self._broadcast(list(self.inflight.values()))

    # ---- receipts ---------------------------------------------------------------------------------------
    def _track(self) -> bool:
        if not self.inflight:
            return False
        me = self.writer.address()
        head_hex, mined_hex, pending_hex = self.writer.rpc.batch([
            ("eth_blockNumber", []), ("eth_getTransactionCount", [me, "latest"]),
            ("eth_getTransactionCount", [me, "pending"])])
        self.head, mined = int(head_hex, 16), int(mined_hex, 16)
        self._watch_gap(int(pending_hex, 16), mined)
        done = [f for n, f in self.inflight.items() if n < mined and f.receipt is None]
        if done:
            found = self.writer.receipts([a.tx_hash for f in done for a in f.attempts])
            now = time.monotonic()
            for f in done:
                f.receipt = next((found[a.tx_hash] for a in f.attempts if a.tx_hash in found), None)
                if f.receipt is not None:
                    f.missing_since = None
                elif f.missing_since is None:  # a node may count the nonce a moment before it serves the receipt
                    f.missing_since = now
                elif now - f.missing_since > 3.0:  # nonce consumed by a tx we did not sign for this intent
                    self._requeue(f, mined)
        ready = [f for f in self.inflight.values() if f.receipt is not None
                 and self.head - int(f.receipt["blockNumber"], 16) + 1 >= max(self.s.confirmations, 1)]
        if ready:
            self._finalize(ready)
        return bool(done or ready)

    def _watch_gap(self, pending: int, mined: int) -> None:
        """A node counts every executable transaction of ours in its pending nonce. When that count stays below a
        nonce we have in flight, the transaction at the count is not executable to the node: it lost it (a restart,
        an eviction) or holds it as queued (anvil, after a race in its pool, held one so until our fee bump 20 s
        later, and every later nonce behind it). A plain resend does not move a queued one; a replacement does. So
        once the gap has lasted stall_bump_after_s, that transaction is re-priced at once.
        Only with a node seen to count pending transactions (pending > latest once): some providers answer `pending`
        as `latest`, and there every transaction waiting for its block would look lost and be re-priced again and
        again."""
        if pending > mined:
            self._counts_pending = True
        f = self.inflight.get(pending)
        if not self._counts_pending or f is None or f.receipt is not None:
            self._gap_since = None
            return
        now = time.monotonic()
        if self._gap_since is None or self._gap_since < f.last.at:  # counted afresh for each attempt
            self._gap_since = now
        elif now - self._gap_since >= self.s.stall_bump_after_s:
            log.warning("the node does not count our next transaction as pending; re-pricing it",
                        extra={"intent": f.key, "nonce": f.nonce, "tx": f.last.tx_hash})
            f.stalled = True
            self._gap_since = None

    def _finalize(self, ready: list[InFlight]) -> None:
        # A receipt can be orphaned by a reorg before it is deep enough: check its block is still canonical.
        blocks = {}
        nums = sorted({int(f.receipt["blockNumber"], 16) for f in ready})  # type: ignore[index]
        for i in range(0, len(nums), 50):
            chunk = nums[i:i + 50]
            for n, b in zip(chunk, self.writer.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in chunk])):
                blocks[n] = (b or {}).get("hash")
        rows = []
        for f in ready:
            r = f.receipt
            bn = int(r["blockNumber"], 16)  # type: ignore[index]
            if blocks.get(bn) != r["blockHash"]:  # type: ignore[index]
                log.warning("receipt lost to a reorg; re-broadcasting", extra={"intent": f.key, "nonce": f.nonce})
                f.receipt = None
                f.rebroadcast_at = 0.0
                continue
            ok = int(r["status"], 16) == 1  # type: ignore[index]
            err = None if ok else self.writer.revert_reason(f.request, bn, r["transactionHash"])  # type: ignore[index]
            rows.append((f, ok, err))
        if not rows:
            return
        self._record([(f, ok, err, f.receipt["transactionHash"], int(f.receipt["blockNumber"], 16),  # type: ignore[index]
                       f.receipt["blockHash"]) for f, ok, err in rows])  # type: ignore[index]

    # ---- outcomes (every family) ----------------------------------------------------------------------
    def _record(self, rows: list[tuple[InFlight, bool, str | None, str, int, str]]) -> None:
        """Commit the outcome of final writes (flight, succeeded, error, tx hash, block number, block hash) with the
        payments a failure leaves to refund; then forget the flights and report."""
        outcomes = [(f, self._outcome(ok, err), err, *where) for f, ok, err, *where in rows]
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            cur.execute("SET LOCAL synchronous_commit TO off")  # lost on a crash? recovery finds the inclusion again
            _many(cur, "UPDATE oracle_intent SET status = %s, already_on_chain = %s, tx_hash = %s, block_number = %s,"
                  " block_hash = %s, error = %s, confirmed_at = now(), updated_at = now() WHERE id = %s",
                  [(st, repeat, h, n, bh, err, f.intent_id) for f, (st, repeat), err, h, n, bh in outcomes])
            flagged = payments.writes_failed(cur, [f.intent_id for f, o, *_ in outcomes if o[0] == "failed"])
        for f, (status, repeat), err, *_ in outcomes:
            self.inflight.pop(f.nonce, None)
            if status == "failed":
                log.warning("write refused by the chain", extra={"intent": f.key, "error": err})
            elif repeat:
                log.info("write refused as already done: the chain has it", extra={"intent": f.key, "error": err})
        for provider, event_id, out in flagged:
            payments.report(provider, event_id, out)

    def _repeat(self, err: str | None) -> bool:
        """Does this refusal say the chain has the write already (the contract's duplicate guard: a payment
        reference used, an order settled, a root anchored, a verification used)?"""
        return err is not None and err.split("(", 1)[0] in ALREADY_DONE

    def _outcome(self, ok: bool, err: str | None) -> tuple[str, bool]:
        """(status, already_on_chain) of a mined or reverted write. A revert by the duplicate guard is the write
        done, not failed: an earlier attempt of this intent (a transaction we lost track of, a requeue after its nonce
        was taken) or the same reference written before. Flagging it failed would ask a refund for a payment whose
        write is on chain, exactly once."""
        if ok:
            return "confirmed", False
        return ("confirmed", True) if self._repeat(err) else ("failed", False)


    def _requeue(self, f: InFlight, mined: int) -> None:
        log.warning("nonce consumed by another transaction; intent back to pending",
                    extra={"intent": f.key, "nonce": f.nonce, "mined_nonce": mined, "hashes": [a.tx_hash for a in f.attempts]})
        with self._fenced() as cur:
            cur.execute("UPDATE oracle_intent SET status = 'pending', nonce = NULL, updated_at = now() WHERE id = %s",
                        (f.intent_id,))
        self.inflight.pop(f.nonce, None)

    # ---- fees, retries ----------------------------------------------------------------------------------
    def _market_fees(self) -> Fees:
        now = time.monotonic()
        if self._fees is None or now - self._fees[0] > 2.0:
            self._fees = (now, self.writer.fees())
        return self._fees[1]

    def _retry_and_bump(self) -> bool:
        now = time.monotonic()
        resend, bump = [], []
        for f in self.inflight.values():
            if f.receipt is not None:
                continue
            if now - f.last.at >= self.s.fee_bump_after_s or f.stalled or (
                    f.underpriced and f.rebroadcast_at is not None and now >= f.rebroadcast_at):
                f.underpriced = f.stalled = False
                bump.append(f)
            elif f.rebroadcast_at is not None and now >= f.rebroadcast_at:
                resend.append(f)
        if bump:
            market = self._market_fees()
            new: list[tuple[InFlight, Attempt]] = []
            for f in bump:
                b = f.last.fees.bumped()
                fees = Fees(max(b.max_fee, market.max_fee), max(b.priority_fee, market.priority_fee))
                h, raw = self.writer.sign(f.request, f.nonce, {"gas": f.last.gas, "max_fee": fees.max_fee,
                                                               "priority_fee": fees.priority_fee})
                new.append((f, Attempt(h, raw, fees, f.last.gas, now)))
            self._persist_attempts(new)
            for f, a in new:
                f.attempts.append(a)
            log.info("fee bump", extra={"count": len(bump)})
        if resend or bump:
            self._broadcast(resend + bump)
        return bool(resend or bump)

    # ---- claim, sign, persist, broadcast ---------------------------------------------------------------
    def _fill(self) -> bool:
        room = self.s.max_in_flight - len(self.inflight)
        if room <= 0:
            return False
        new: list[InFlight] = []
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            rows = cur.execute(
                "SELECT id, idempotency_key, contract, function, args FROM oracle_intent WHERE chain = %s AND"
                " status = 'pending' ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED", (self.chain, room)).fetchall()
            if not rows:
                return False
            reqs = [TxRequest(self.chain, r[2], r[3], tuple(r[4]), idempotency_key=r[1]) for r in rows]
            done_on_chain, checks = self._prechecks(reqs)
            market = self._market_fees()
            self.lease.fence(cur)
            nonce = cur.execute("SELECT next_nonce FROM oracle_nonce WHERE chain = %s AND signer = %s FOR UPDATE",
                                (self.chain, self.signer)).fetchone()[0]
            attempts, done, failed = [], [], []
            for (iid, key, *_), req, (gas, err), on_chain in zip(rows, reqs, checks, done_on_chain):
                if on_chain:
                    done.append((f"already on chain ({DONE_VIEWS[(req.contract, req.function)][0]})", iid))
                    continue
                if err is not None:
                    (done if self._repeat(err) else failed).append((err, iid))
                    continue
                h, raw, gas = self._sign_new(req, nonce, gas, market)
                f = InFlight(iid, key, req, nonce, [Attempt(h, raw, market, gas, time.monotonic())])
                new.append(f)
                attempts.append((iid, self.chain, self.signer, nonce, h, raw, market.max_fee, market.priority_fee,
                                 gas, self.lease.epoch))
                nonce += 1
            if attempts:
                _many(cur, _INSERT_ATTEMPT, attempts)
                _many(cur, "UPDATE oracle_intent SET status = 'signed', nonce = %s, signer = %s, tx_hash = %s,"
                      " updated_at = now() WHERE id = %s", [(a[3], self.signer, a[4], a[0]) for a in attempts])
                cur.execute("UPDATE oracle_nonce SET next_nonce = %s WHERE chain = %s AND signer = %s",
                            (nonce, self.chain, self.signer))
            if done:
                _many(cur, "UPDATE oracle_intent SET status = 'confirmed', already_on_chain = true, error = %s,"
                      " confirmed_at = now(), updated_at = now() WHERE id = %s", done)
            flagged = []
            if failed:
                _many(cur, "UPDATE oracle_intent SET status = 'failed', error = %s, updated_at = now() WHERE id = %s",
                      failed)
                flagged = payments.writes_failed(cur, [iid for _, iid in failed])  # a payment taken: refund due
        for err, _ in failed:
            log.warning("pre-check refused a write", extra={"error": err})
        for provider, event_id, out in flagged:
            payments.report(provider, event_id, out)
        for f in new:
            self.inflight[f.nonce] = f
        if new:
            self._broadcast(new)
        return True

    def _sign_new(self, req: TxRequest, nonce: int, estimate: int, market: Fees) -> tuple[str, bytes, int]:
        """Sign a first attempt: (hash, raw, the value its attempt row keeps as `gas`)."""
        gas = int(estimate * self.s.gas_multiplier) + 10_000
        h, raw = self.writer.sign(req, nonce, {"gas": gas, "max_fee": market.max_fee, "priority_fee": market.priority_fee})
        return h, raw, gas

    def _prechecks(self, reqs: list[TxRequest]) -> tuple[list[bool], list[tuple[int | None, str | None]]]:
        """Per write: is it already on chain (its duplicate-guard view: paymentRefUsed, settled, anchoredAt,
        usedVerification), and its gas estimate or decoded revert. One batched round trip for both."""
        idx = [i for i, r in enumerate(reqs) if (r.contract, r.function) in DONE_VIEWS]
        views = []
        for i in idx:
            r = reqs[i]
            view, arg = DONE_VIEWS[(r.contract, r.function)]
            views.append(TxRequest(self.chain, r.contract, view, (r.args[arg],)))
        values, checks = self.writer.views_and_estimates(views, reqs)
        done = [False] * len(reqs)
        for i, v in zip(idx, values):
            done[i] = bool(v)  # anchoredAt returns a block number: non-zero means anchored
        return done, checks

    @_db_retry
    def _persist_attempts(self, pairs: list[tuple[InFlight, Attempt]]) -> None:
        with self._fenced() as cur:
            rows = [(f.intent_id, self.chain, self.signer, f.nonce, a.tx_hash, a.raw, a.fees.max_fee, a.fees.priority_fee,
                     a.gas, self.lease.epoch) for f, a in pairs]
            _many(cur, _INSERT_ATTEMPT, rows)
            _many(cur, "UPDATE oracle_intent SET tx_hash = %s, updated_at = now() WHERE id = %s",
                  [(a.tx_hash, f.intent_id) for f, a in pairs])

    def _broadcast(self, flights: list[InFlight]) -> None:
        flights.sort(key=lambda f: f.nonce)  # lower nonces first, or the node queues the rest
        now = time.monotonic()
        for f in flights:  # if this round dies mid-broadcast, a later round resends (raw txs are idempotent)
            f.rebroadcast_at = now + 2.0
        results = self.writer.broadcast_many([f.last.raw for f in flights])
        sent, errors = [], []
        for f, res in zip(flights, results):
            if isinstance(res, Rejected):
                f.rebroadcast_at = now + 1.0
                f.underpriced = any(w in str(res).lower() for w in ("fee", "underpriced", "gas price"))
                errors.append((str(res)[:500], f.last.tx_hash))
                log.warning("broadcast refused", extra={"intent": f.key, "nonce": f.nonce, "error": str(res)[:200]})
                continue
            if isinstance(res, MaybeSent):
                # The node may hold it; the receipt check settles it. Resend later in case it did not.
                f.rebroadcast_at = now + 2.0
                errors.append((f"maybe sent: {str(res)[:480]}", f.last.tx_hash))
            else:
                f.rebroadcast_at = None
            sent.append((f.last.tx_hash, f.intent_id))
        self._mark_sent(sent, errors)

    @_db_retry
    def _mark_sent(self, sent: list[tuple[str, int]], errors: list[tuple[str, str]]) -> None:
        with self.pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            cur.execute("SET LOCAL synchronous_commit TO off")  # lost on a crash? recovery resends "signed" rows

            if sent:
                _many(cur, "UPDATE oracle_attempt SET broadcast_at = coalesce(broadcast_at, now()) WHERE tx_hash = %s",
                      [(h,) for h, _ in sent])
                _many(cur, "UPDATE oracle_intent SET status = 'sent', broadcast_at = coalesce(broadcast_at, now()),"
                      " updated_at = now() WHERE id = %s AND status = 'signed'", [(i,) for _, i in sent])
            if errors:
                _many(cur, "UPDATE oracle_attempt SET broadcast_error = %s WHERE tx_hash = %s", errors)


class RemembersAttempts:
    """For senders whose writer must know each persisted attempt's validity window before it broadcasts (Aptos: its
    expiration; Substrate: its era's birth block, both kept in the attempt's `gas` column), e.g. after a takeover."""

    writer: Any

    def _broadcast(self, flights: list[InFlight]) -> None:
        for f in flights:
            for a in f.attempts:
                self.writer.remember(a.tx_hash, a.gas)
        super()._broadcast(flights)  # type: ignore[misc]

