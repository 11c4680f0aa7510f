"""The sender in a process of its own, beside the ingress (`carbonledger oracle run` is two processes).

Why: in one process the sender's thread shared the interpreter lock with the ingress (uvicorn's loop, the webhook
decisions on their worker threads), and each step of a round (a database or node round trip) queued for the lock
again behind busy webhook code. At 100 payments/s on one listing (bench/oracle.py --events 800 --rate 100,
interleaved, load 0.9-4.6): webhook->broadcast p50 28.7 / 27.5 / 27.8 ms with a thread, 17.8 / 12.0 / 11.8 ms with
this process.

Parent (`SenderProcess`): a supervisor thread starts the child with multiprocessing's spawn (a fresh interpreter:
nothing inherited from the parent's threads, pools or sockets) and is the only one that waits on it, signals it or
reaps it. It starts another, with backoff, when one dies while the oracle is not stopping (Postgres releases the
lease the dead one held with its connection; `/health` shows the round age meanwhile), also when starting one fails.
`stop()` wakes it: it sends the child SIGTERM (the child finishes its round, releases the nonce lease and exits 0)
and SIGKILL after `timeout`, or at once if the parent's own stop is interrupted (a second signal). The child's
status (/health, /ready, /metrics) is three shared doubles.

Child (`_child`): dies with the parent, as the thread it replaces did: a parent killed at any instant leaves no
sender behind holding the nonce lease, and exactly-once never depended on a graceful end. On Linux by
PR_SET_PDEATHSIG (SIGKILL; it follows the parent *thread* that started the child, which is the supervisor, alive
until the child is reaped); elsewhere a thread watching the parent's sentinel exits the process. Only the parent
decides when it stops: SIGINT (a terminal's Ctrl-C reaches the whole process group) is ignored and SIGTERM, however
often it comes, only asks it to finish its round.
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
from multiprocessing import connection
from typing import Any

from oracle.sender import SenderStatus

log = logging.getLogger("carbonledger.oracle")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_BACKOFF_MAX_S = 30.0


class SenderProcess:
    """The sender of `chain`, run in a child process; `status()` is the child's latest. `stopping`: the oracle's stop
    event (set by its signal handler): once set, a child that ends is not replaced."""

    def __init__(self, chain: str, chain_settings: Any, oracle_settings: Any, url: str, owner: str,
                 log_level: str, stopping: threading.Event | None = None) -> None:
        self._args = (chain, chain_settings, oracle_settings, url, owner, log_level)
        self._mp = multiprocessing.get_context("spawn")
        self._shared = self._mp.Array("d", 3, lock=False)  # last_round, nonce_owner, in_flight (see publish)
        self._shared[0] = time.monotonic()  # a sender starting up is not a stuck one
        self._stopping = stopping or threading.Event()
        self._wake_r, self._wake_w = os.pipe()  # stop() -> the supervisor, waiting on the child's sentinel
        self._kill_now = False
        self._timeout = 15.0
        self._supervisor: threading.Thread | None = None

    def status(self) -> SenderStatus:
        s = self._shared
        return SenderStatus(s[0], bool(s[1]), int(s[2]))

    def start(self) -> None:
        self._supervisor = threading.Thread(target=self._supervise, name="sender-supervisor", daemon=True)
        self._supervisor.start()

    def _supervise(self) -> None:
        delay = 1.0
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                proc = self._mp.Process(target=_child, args=(*self._args, self._shared, os.getpid()),
                                        name="carbonledger-sender")
                proc.start()
            except Exception as exc:  # noqa: BLE001 - out of processes or memory: try again after a backoff
                log.error("could not start the sender process", extra={"error": f"{type(exc).__name__}: {exc}"[:300],
                                                                        "retry_in_s": delay})
            else:
                if self._wait(proc):
                    return
                self._shared[1] = self._shared[2] = 0.0  # its lease and in-flight list went with it
                if time.monotonic() - started > 60:
                    delay = 1.0  # it ran for a while: a fresh failure, not a crash loop
                if self._stopping.wait(0.5):  # it ended because the oracle is stopping (a group signal)
                    return
                log.error("the sender process exited unexpectedly; starting another",
                          extra={"exit_code": proc.exitcode, "restart_in_s": delay})
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, _BACKOFF_MAX_S)

    def _wait(self, proc: Any) -> bool:
        """Until the child ends (False) or stop() asks (True: the child is stopped, then reaped, here)."""
        ready = connection.wait([proc.sentinel, self._wake_r])
        if proc.sentinel in ready and self._wake_r not in ready:
            proc.join()
            return False
        proc.terminate()  # SIGTERM: the round ends, the lease is released
        deadline = time.monotonic() + self._timeout
        while proc.exitcode is None and not self._kill_now and time.monotonic() < deadline:
            connection.wait([proc.sentinel], 0.1)
        if proc.exitcode is None:
            if not self._kill_now:
                log.warning("the sender process did not stop in time; killing it", extra={"timeout_s": self._timeout})
            proc.kill()
        proc.join()
        return True

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the child (SIGTERM, then SIGKILL after `timeout`) and wait for it. Interrupted (a second signal to
        the oracle), it has the supervisor kill the child at once, and re-raises."""
        if self._wake_w < 0:
            return  # stopped already
        self._timeout = timeout
        self._stopping.set()
        try:
            os.write(self._wake_w, b"x")
            if self._supervisor is not None:
                self._supervisor.join()
        except BaseException:
            self._kill_now = True  # the supervisor kills the child within 0.1 s
            raise
        finally:
            if self._supervisor is None or not self._supervisor.is_alive():
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_w = -1


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    else:
        sentinel = multiprocessing.parent_process().sentinel  # type: ignore[union-attr]
        threading.Thread(target=lambda: (connection.wait([sentinel]), os._exit(1)), daemon=True).start()
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _child(chain: str, cs: Any, o: Any, url: str, owner: str, log_level: str, shared: Any, parent: int) -> None:
    _die_with_parent(parent)
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides (module docstring)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    from core import heap
    from core.logs import setup_logging

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
