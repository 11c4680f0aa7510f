"""New heads pushed over WebSocket (evm: `eth_subscribe` newHeads; substrate: `chain_subscribeNewHeads`, or
`chain_subscribeFinalizedHeads` when the indexer follows finalized blocks) wake the sync loop at once; polling
stays the fallback, so a dropped socket only costs latency, never data (the loop still checks every block's
parent)."""

from __future__ import annotations

import logging
import threading

import orjson

log = logging.getLogger("carbonledger.indexer.heads")


class HeadWatcher:
    def __init__(self, chain: str, url: str, wake: threading.Event, stop: threading.Event, *, family: str = "evm",
                 finalized: bool = False) -> None:
        self.chain, self.url, self.wake, self.daemon_stop = chain, url, wake, stop
        self.halted = threading.Event()  # close(): this watcher ends even when the daemon goes on (run_once, tests)
        if family == "substrate":
            self.subscribe = ("chain_subscribeFinalizedHeads" if finalized else "chain_subscribeNewHeads", [])
        else:
            self.subscribe = ("eth_subscribe", ["newHeads"])
        self.heads = 0
        self._thread = threading.Thread(target=self._run, name=f"heads-{chain}", daemon=True)

    def start(self) -> HeadWatcher:
        self._thread.start()
        return self

    @property
    def stopping(self) -> bool:
        return self.daemon_stop.is_set() or self.halted.is_set()

    def close(self, timeout: float = 5.0) -> None:
        """End the thread (it checks once a second) and wait for it: nothing of an indexer outlives its run."""
        self.halted.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        from websockets.sync.client import connect

        while not self.stopping:
            try:
                with connect(self.url, open_timeout=5, close_timeout=1) as ws:
                    ws.send(orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": self.subscribe[0],
                                          "params": self.subscribe[1]}))
                    ack = orjson.loads(ws.recv(timeout=5))
                    if "error" in ack:
                        log.warning("head subscription not supported; polling only", extra={"chain": self.chain, "error": ack["error"]})
                        return
                    log.info("subscribed to new heads", extra={"chain": self.chain})
                    while not self.stopping:
                        try:
                            ws.recv(timeout=1.0)
                        except TimeoutError:
                            continue
                        self.heads += 1
                        self.wake.set()
            except Exception as exc:  # noqa: BLE001 - any socket trouble: fall back to polling, retry later
                if self.stopping:
                    return
                log.info("head subscription socket down; polling", extra={"chain": self.chain, "error": str(exc)[:200]})
                self.halted.wait(2.0)
