"""`run(settings)`: the oracle daemon. uvicorn serves the ingress; the sender runs in a child process
(oracle.sender_process); apscheduler runs the jobs. SIGTERM: stop accepting, let the sender finish its round, stop
the scheduler, close the pool, exit 0."""

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
from oracle.sender_process import SenderProcess
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
        st = self.o.sender.status()
        yield GaugeMetricFamily("oracle_in_flight", "Transactions in flight (this oracle's sender)", value=st.in_flight)
        yield GaugeMetricFamily("oracle_nonce_owner", "1 when this oracle's sender owns the signing key's nonces",
                                value=1 if st.nonce_owner else 0)
        try:
            bal = self.o.writer.balance()
        except Exception:  # noqa: BLE001
            bal = float("nan")
        yield GaugeMetricFamily("oracle_signer_balance_wei", "Signer balance", value=bal)


# Per chain family: how the oracle builds its writer (from the chain's settings and the signing key) and which
# sender follows its transactions (module:class). A new family adds one entry to each.
SENDERS = {"evm": "oracle.sender:Sender", "substrate": "oracle.substrate_sender:SubstrateSender",
           "aptos": "oracle.aptos_sender:AptosSender"}


def _evm_writer(chain: str, rpc: RpcClient, cs: Any, o: Any) -> Any:
    from chains.evm.deploy import resolved_contracts

    contracts = {n: c.address for n, c in resolved_contracts(cs, chain).items()}
    return EvmWriter(chain, rpc, _chain_id(rpc, chain, cs.chain_id), load_signer(o), contracts)


def _chain_id(rpc: RpcClient, chain: str, expected: int | None) -> int:
    deadline = time.monotonic() + 30
    while True:
        try:
            got = int(rpc.call("eth_chainId"), 16)
            break
        except Exception:  # noqa: BLE001 - node not up yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    if expected is not None and got != expected:
        raise ConfigError(f"chain {chain!r}: node reports chain id {got}, config expects {expected}")
    return got


def _substrate_writer(chain: str, rpc: Any, cs: Any, o: Any) -> Any:
    from chains.substrate.accounts import RETIREMENT_ACCOUNT, check_settings, public_key
    from chains.substrate.ink import load_contracts
    from chains.substrate.writer import SubstrateWriter

    check_settings(cs, chain)
    contracts = load_contracts(cs.ink_contracts, chain)
    for address, c in cs.ink_contracts.items():
        missing = contracts[public_key(address)].missing_messages()
        if missing:  # the oracle would have nothing to call: say so now, not at the first payment
            raise ConfigError(f"chains.{chain}.ink_contracts.{address}.metadata: {c.metadata} has no message "
                              f"{', '.join(missing)} for the oracle to write with; see contracts/substrate/escrow.json")
    writer = SubstrateWriter.from_secret(
        chain, str(cs.ws_url or cs.rpc_url).rstrip("/"), load_signer(o).reveal(), contracts=contracts,
        retirement_account=public_key(cs.retirement_account) if cs.retirement_account else RETIREMENT_ACCOUNT)
    if contracts and not writer.has_call("Contracts", "call"):
        raise ConfigError(f"chains.{chain}.ink_contracts: the node's runtime has no contracts pallet "
                          "(Contracts.call), so the oracle cannot write to an ink! contract there")
    return writer


def _aptos_writer(chain: str, rpc: Any, cs: Any, o: Any) -> Any:
    from chains.aptos.writer import AptosWriter

    return AptosWriter.from_secret(chain, str(cs.rpc_url).rstrip("/"), load_signer(o).reveal(), cs.aptos_package,
                                   chain_id=cs.chain_id)


_WRITERS = {"evm": _evm_writer, "substrate": _substrate_writer, "aptos": _aptos_writer}


def _rpc(cs: Any) -> RpcClient:
    # Short timeouts and few retries: a hung node must surface as "maybe sent", not stall the loop for minutes.
    return RpcClient(str(cs.rpc_url).rstrip("/"), timeout_s=min(cs.request_timeout_s, 5.0), retries=2)


def build_sender(chain: str, cs: Any, o: Any, url: str, owner: str, stop: threading.Event) -> tuple[Any, Any]:
    """The chain family's sender with its own writer, node client and database pool (in the sender process), and a
    function that closes them."""
    from psycopg_pool import ConnectionPool

    rpc = _rpc(cs)
    try:
        writer = _WRITERS[cs.family](chain, rpc, cs, o)
        pool = ConnectionPool(url, min_size=1, max_size=2, open=True, timeout=10)
    except BaseException:
        rpc.close()
        raise
    module, _, name = SENDERS[cs.family].partition(":")
    sender = getattr(importlib.import_module(module), name)(url, pool, writer, o, owner, stop)

    def close() -> None:
        pool.close()
        rpc.close()

    return sender, close


class Oracle:
    """The daemon's parts; `run` serves them, the sender in its own process (oracle.sender_process). With
    `sender_thread` (the demo, which is one process) the sender is built here instead, for the caller to run on a
    thread (`sender.run`) and close (`close_sender`); `run` is not for that case."""

    def __init__(self, settings: Settings, database_url: str, *, sender_thread: bool = False) -> None:
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
        self.rpc = _rpc(cs)
        self.stop = threading.Event()
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        # The ingress's writer: the signer's address and balance (the sender process builds its own, and with its own
        # pool: sharing one, the decisions waiting on a listing's lock held every connection and the sender waited).
        self.writer = _WRITERS[cs.family](self.chain, self.rpc, cs, o)
        self.sender: Any
        self.close_sender: Any = lambda: None
        if sender_thread:
            self.sender, self.close_sender = build_sender(self.chain, cs, o, self.url, owner, self.stop)
        else:
            self.sender = SenderProcess(self.chain, cs, o, self.url, owner, settings.log_level, self.stop)
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(self))
        self.registry.register(PaymentCollector(self.pool))
        self.app = OracleApp(self.pool, o, self.chain, sender=self.sender, registry=self.registry, daraja=make_daraja(o))
        log.info("oracle configured", extra={"chain": self.chain, "signer": self.writer.address(), "owner": owner})

    def run(self) -> int:
        if not isinstance(self.sender, SenderProcess):
            raise RuntimeError("Oracle.run starts the sender process; built with sender_thread=True, run sender.run")
        import uvicorn

        from core.shutdown import stop_on_signals
        from core.wire import OneWriteHttpToolsProtocol
        from oracle.reconciliation import schedule

        o = self.settings.oracle
        server = uvicorn.Server(uvicorn.Config(self.app.asgi(), host=o.host, port=o.port, log_level="warning",
                                               access_log=False, lifespan="off", http=OneWriteHttpToolsProtocol))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # we own SIGTERM
        logging.getLogger("apscheduler").setLevel(logging.WARNING)  # it logs every run at INFO
        sched = schedule(self.pool, self.chain, o)
        stop_on_signals(self.stop)
        threading.Thread(target=lambda: (self.stop.wait(), setattr(server, "should_exit", True)), daemon=True).start()
        # The webhook decisions' worker threads share the GIL with uvicorn's loop; at the default 5 ms switch interval
        # each of their database round trips can wait that long to run again (measured with the sender still a thread
        # here, 100 payments/s: webhook->broadcast p50 28 and 23 ms at 1 ms against 30 and 39 ms at 5 ms).
        sys.setswitchinterval(0.001)
        heap.settle(young=None)  # start-up is done: frozen (core.heap); short requests, so CPython's young spacing
        self.sender.start()
        try:
            server.run()
        finally:
            self.stop.set()
            self.sender.stop(timeout=15)
            sched.shutdown(wait=False)
            self.pool.close()
            self.rpc.close()
            log.info("oracle stopped")
        return 0
