"""`run(settings)`: the oracle daemon. uvicorn serves the ingress; a thread runs the sender; apscheduler runs the
jobs. SIGTERM: stop accepting, finish the sender round, stop the scheduler, close the pool, exit 0."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from core import heap
from core.config import ConfigError, Settings
from chains.evm.rpc import RpcClient
from chains.evm.writer import EvmWriter
from oracle.app import OracleApp
from oracle.ingress.mpesa import make_daraja
from oracle.payments import PaymentCollector
from oracle.signer import load_signer

log = logging.getLogger("carbonledger.oracle")


class _Collector:
    """Scrape-time metrics: intents by status, in-flight txs, signer balance."""

    def __init__(self, oracle: Oracle) -> None:
        self.o = oracle

    def collect(self) -> Any:
        from oracle.outbox import status_counts
        from store.outbox import INTENT_STATUSES

        g = GaugeMetricFamily("oracle_intents", "Intents by status", labels=["status"])
        try:
            counts = status_counts(self.o.pool)
        except Exception:  # noqa: BLE001
            counts = {}
        for st in INTENT_STATUSES:
            g.add_metric([st], counts.get(st, 0))
        yield g
        yield GaugeMetricFamily("oracle_in_flight", "Transactions in flight (this process)", value=len(self.o.sender.inflight))
        yield GaugeMetricFamily("oracle_nonce_owner", "1 when this process owns the signing key's nonces",
                                value=1 if self.o.sender.lease.held else 0)
        try:
            bal = self.o.writer.balance()
        except Exception:  # noqa: BLE001
            bal = float("nan")
        yield GaugeMetricFamily("oracle_signer_balance_wei", "Signer balance", value=bal)


# Per chain family: how the oracle builds its writer (from the chain's settings and the signing key) and which
# sender follows its transactions (module:class). A new family adds one entry to each.
SENDERS = {"evm": "oracle.sender:Sender", "substrate": "oracle.substrate_sender:SubstrateSender",
           "aptos": "oracle.aptos_sender:AptosSender"}


def _evm_writer(oracle: Oracle, cs: Any, o: Any) -> Any:
    from chains.evm.deploy import resolved_contracts

    contracts = {n: c.address for n, c in resolved_contracts(cs, oracle.chain).items()}
    return EvmWriter(oracle.chain, oracle.rpc, oracle._chain_id(cs.chain_id), load_signer(o), contracts)


def _substrate_writer(oracle: Oracle, cs: Any, o: Any) -> Any:
    from chains.substrate.accounts import RETIREMENT_ACCOUNT, check_settings, public_key
    from chains.substrate.ink import load_contracts
    from chains.substrate.writer import SubstrateWriter

    check_settings(cs, oracle.chain)
    contracts = load_contracts(cs.ink_contracts, oracle.chain)
    for address, c in cs.ink_contracts.items():
        missing = contracts[public_key(address)].missing_messages()
        if missing:  # the oracle would have nothing to call: say so now, not at the first payment
            raise ConfigError(f"chains.{oracle.chain}.ink_contracts.{address}.metadata: {c.metadata} has no message "
                              f"{', '.join(missing)} for the oracle to write with; see contracts/substrate/escrow.json")
    writer = SubstrateWriter.from_secret(
        oracle.chain, str(cs.ws_url or cs.rpc_url).rstrip("/"), load_signer(o).reveal(), contracts=contracts,
        retirement_account=public_key(cs.retirement_account) if cs.retirement_account else RETIREMENT_ACCOUNT)
    if contracts and not writer.has_call("Contracts", "call"):
        raise ConfigError(f"chains.{oracle.chain}.ink_contracts: the node's runtime has no contracts pallet "
                          "(Contracts.call), so the oracle cannot write to an ink! contract there")
    return writer


def _aptos_writer(oracle: Oracle, cs: Any, o: Any) -> Any:
    from chains.aptos.writer import AptosWriter

    return AptosWriter.from_secret(oracle.chain, str(cs.rpc_url).rstrip("/"), load_signer(o).reveal(), cs.aptos_package,
                                   chain_id=cs.chain_id)


_WRITERS = {"evm": _evm_writer, "substrate": _substrate_writer, "aptos": _aptos_writer}


class Oracle:
    def __init__(self, settings: Settings, database_url: str) -> None:
        from psycopg_pool import ConnectionPool

        from store.engine import libpq_url

        self.settings = settings
        o = settings.oracle
        if not settings.chains:
            raise ConfigError("oracle: no chains configured")
        self.chain = o.chain or next(iter(settings.chains))
        cs = settings.chains[self.chain]
        self.url = libpq_url(database_url)
        self.pool = ConnectionPool(self.url, min_size=2, max_size=12, open=True, timeout=10)
        # The sender's own connections: with one shared pool, the ingress's decisions waiting their turn on a
        # listing's lock held every connection and the sender waited for one (py-spy at 100 payments/s on one
        # listing: 17% of the sender's time in the pool's getconn).
        self.sender_pool = ConnectionPool(self.url, min_size=1, max_size=2, open=True, timeout=10)
        # Short timeouts and few retries: a hung node must surface as "maybe sent", not stall the loop for minutes.
        self.rpc = RpcClient(str(cs.rpc_url).rstrip("/"), timeout_s=min(cs.request_timeout_s, 5.0), retries=2)
        self.stop = threading.Event()
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.writer = _WRITERS[cs.family](self, cs, o)
        module, _, name = SENDERS[cs.family].partition(":")
        Sender = getattr(importlib.import_module(module), name)
        self.sender = Sender(self.url, self.sender_pool, self.writer, o, owner, self.stop)
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))
        self.registry.register(PaymentCollector(self.pool))
        self.app = OracleApp(self.pool, o, self.chain, sender=self.sender, registry=self.registry, daraja=make_daraja(o))
        log.info("oracle configured", extra={"chain": self.chain, "signer": self.writer.address(), "owner": owner})

    def _chain_id(self, expected: int | None) -> int:
        deadline = time.monotonic() + 30
        while True:
            try:
                got = int(self.rpc.call("eth_chainId"), 16)
                break
            except Exception:  # noqa: BLE001 - node not up yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        if expected is not None and got != expected:
            raise ConfigError(f"chain {self.chain!r}: node reports chain id {got}, config expects {expected}")
        return got

    def run(self) -> int:
        import uvicorn

        from core.shutdown import stop_on_signals
        from oracle.reconciliation import schedule

        o = self.settings.oracle
        server = uvicorn.Server(uvicorn.Config(self.app.asgi(), host=o.host, port=o.port, log_level="warning",
                                               access_log=False, lifespan="off"))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # we own SIGTERM
        sender = threading.Thread(target=self.sender.run, name="sender", daemon=True)
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # it logs every run at INFO
        sched = schedule(self.pool, self.chain, o)
        stop_on_signals(self.stop)
        threading.Thread(target=lambda: (self.stop.wait(), setattr(server, "should_exit", True)), daemon=True).start()
        # The sender shares the GIL with the ingress's worker threads; at the default 5 ms switch interval each of
        # its I/O steps can wait that long to run again behind a busy webhook. Measured at 100 payments/s (bench/
        # oracle.py --events 600 --rate 100, alternating, load ~2.5): webhook->broadcast p50 28 and 23 ms at 1 ms
        # against 30 and 39 ms at 5 ms.
        sys.setswitchinterval(0.001)
        heap.settle(young=None)  # start-up is done: frozen (core.heap); short requests, so CPython's young spacing
        sender.start()
        try:
            server.run()
        finally:
            self.stop.set()
            sender.join(timeout=15)
            sched.shutdown(wait=False)
            self.pool.close()
            self.sender_pool.close()
            self.rpc.close()
            log.info("oracle stopped")
        return 0
