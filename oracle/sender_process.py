"""The sender in a process of its own, beside the ingress (`carbonledger oracle run` is two processes).

Why: in one process the sender's thread shared the interpreter lock with the ingress (uvicorn's loop, the webhook
decisions on their worker threads), and each step of a round (a database or node round trip) queued for the lock
again behind busy webhook code. At 100 payments/s on one listing (bench/oracle.py --events 800 --rate 100,
interleaved, load 0.9-4.6): webhook->broadcast p50 28.7 / 27.5 / 27.8 ms with a thread, 17.8 / 12.0 / 11.8 ms with
this process.

Parent (`SenderProcess`): starts the child with multiprocessing's spawn (a fresh interpreter: nothing inherited from
the parent's threads, pools or sockets), reads its status from three shared doubles (/health, /ready, /metrics),
restarts it with backoff when it dies unexpectedly (the lease it held is released by Postgres with its connection;
`/health` shows the round age meanwhile), and on stop sends it SIGTERM: it finishes its round, releases the nonce
lease and exits; after `timeout` it is killed.

Child (`_child`): dies with the parent (Linux PR_SET_PDEATHSIG, SIGKILL), as the thread it replaces did: a parent
killed at any instant leaves no sender behind holding the nonce lease, and exactly-once never depended on a graceful
end. The signal follows the parent *thread* that started the child, so the supervisor thread starts it and lives
until the child has ended.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Any

from oracle.sender import SenderStatus

log = logging.getLogger("carbonledger.oracle")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_BACKOFF_MAX_S = 30.0


class SenderProcess:
    """The sender of `chain`, run in a child process; `status()` is the child's latest."""

    def __init__(self, chain: str, chain_settings: Any, oracle_settings: Any, url: str, owner: str,
                 log_level: str) -> None:
        self._args = (chain, chain_settings, oracle_settings, url, owner, log_level)
        self._mp = multiprocessing.get_context("spawn")
        self._shared = self._mp.Array("d", 3, lock=False)  # last_round, nonce_owner, in_flight (see publish)
        self._shared[0] = time.monotonic()  # a sender starting up is not a stuck one
        self._lock = threading.Lock()  # orders a (re)start against stop: no child is started after stop began
        self._stopping = threading.Event()
        self._proc: Any = None
        self._supervisor: threading.Thread | None = None
        self.restarts = 0

    def status(self) -> SenderStatus:
        s = self._shared
        return SenderStatus(s[0], bool(s[1]), int(s[2]))

    @property
    def pid(self) -> int | None:
        p = self._proc
        return p.pid if p is not None else None

    def start(self) -> None:
        self._supervisor = threading.Thread(target=self._supervise, name="sender-supervisor", daemon=True)
        self._supervisor.start()

    def _supervise(self) -> None:
        delay = 1.0
        while True:
            with self._lock:
                if self._stopping.is_set():
                    return
                started = time.monotonic()
                self._proc = proc = self._mp.Process(target=_child, args=(*self._args, self._shared, os.getpid()),
                                                     name="carbonledger-sender")
                proc.start()
            proc.join()
            if self._stopping.is_set():
                return
            self._shared[1] = self._shared[2] = 0.0  # its lease and in-flight list went with it
            if time.monotonic() - started > 60:
                delay = 1.0  # it ran for a while: a fresh failure, not a crash loop
            log.error("the sender process exited unexpectedly; starting another",
                      extra={"exit_code": proc.exitcode, "restart_in_s": delay})
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, _BACKOFF_MAX_S)
            self.restarts += 1

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the child (it ends its round and releases the lease), SIGKILL after `timeout`."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is not None and proc.is_alive():
            proc.terminate()
            proc.join(timeout)
            if proc.is_alive():
                log.warning("the sender process did not stop in time; killing it", extra={"timeout_s": timeout})
                proc.kill()
                proc.join()
        if self._supervisor is not None:
            self._supervisor.join(timeout)


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _child(chain: str, cs: Any, o: Any, url: str, owner: str, log_level: str, shared: Any, parent: int) -> None:
    _die_with_parent(parent)
    from core import heap
    from core.logs import setup_logging
    from core.shutdown import stop_on_signals

    stop = threading.Event()
    stop_on_signals(stop)  # SIGTERM from the parent; SIGINT from a terminal's Ctrl-C to the process group
    setup_logging(log_level)
    from oracle.runtime import build_sender

    try:
        sender, close = build_sender(chain, cs, o, url, owner, stop)
    except Exception as exc:  # noqa: BLE001 - one line; the parent starts another after a backoff
        log.error("the sender process could not start", extra={"error": f"{type(exc).__name__}: {exc}"[:300]})
        sys.exit(1)

    def publish(st: SenderStatus) -> None:
        shared[0], shared[1], shared[2] = st.last_round, float(st.nonce_owner), float(st.in_flight)

    sys.setswitchinterval(0.001)  # the pool's threads wake now and then: the sender's next step is not kept waiting
    heap.settle(young=None)  # start-up is done (core.heap), as in the ingress
    try:
        sender.run(publish)
    finally:
        close()
